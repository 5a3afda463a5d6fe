// Package distlock provides distributed locks on Redis for Go services that
// run on several machines and must do one thing once: run a scheduled job on
// one replica per tick, submit a payment once, not oversell stock, rebuild a
// cache entry in one request while the others wait, keep one active leader.
//
// # Entry points
//
//   - New returns a Locker: locks on one Redis deployment (single node,
//     Sentinel or Cluster).
//   - NewRedlock returns a Redlock: locks on a quorum of N independent
//     Redis nodes.
//   - LockService is the interface both satisfy, for code that takes either.
//   - OncePerTick runs a scheduled job once per tick across replicas: the
//     call for every cron or ticker job that fires on every replica.
//   - ClaimTick is OncePerTick's first step, for code that runs the job
//     itself and calls TickClaim.Finish.
//   - Once runs work at most once per key within a window: duplicate
//     submits (a payment), cache rebuilds (the others wait for the outcome).
//   - Lead runs fn on one replica at a time (leader election).
//   - Do runs fn while holding a lock, released when fn returns: mutual
//     exclusion (stock, a migration), not "once".
//   - Obtain takes a lock and returns the *Lock, for the caller to release.
//   - ObtainMulti takes several keys as one lock, all or none, without
//     deadlock between callers whose key sets overlap (moving stock
//     between two warehouses).
//   - Status tells whether a key is free, held, done (by Once) or, on a
//     Redlock, unknown, and who holds it (the owner label, WithOwner).
//   - List and ForceRelease (LockAdmin) are for operators: the locks held
//     under a prefix, and the deletion of a stuck one, whose holder learns
//     at its next refresh (ErrForceReleased).
//
// A job that runs on a schedule on every replica runs once per tick with
// OncePerTick:
//
//	ran, err := locker.OncePerTick(ctx, "report", time.Minute, func(ctx context.Context, tick time.Time) error {
//		return buildReport(ctx, tick)
//	})
//	// ran is false (and err nil) on the replicas that found the tick taken
//
// Not with Do or Obtain: a lock held only while the job runs is free again
// when the job ends, so a replica whose timer fires after that (a slower
// clock, a busy machine) takes it and runs the job a second time in the
// same tick; `go run ./cmd/distlock demo` shows it. OncePerTick keeps the
// tick taken until the tick is over.
//
// Work that must happen once per request (a payment submitted twice) or
// once per period (a cache entry rebuilt by one request while the others
// wait) uses Once, which remembers that the work was done:
//
//	err := locker.Once(ctx, "pay:"+orderID, 24*time.Hour, charge)
//	switch {
//	case errors.Is(err, distlock.ErrAlreadyDone): // paid before: do not charge again
//	case errors.Is(err, distlock.ErrNotObtained): // being paid right now
//	}
//
// A plain lock, for mutual exclusion:
//
//	lock, err := locker.Obtain(ctx, "stock:sku1", distlock.WithBlocking())
//	if err != nil {
//		return err // ctx ended (matches ErrNotObtained too), Redis is down, or bad input
//	}
//	defer lock.Release(ctx)
//
// Do wraps the same in one call, with auto-refresh and a ctx that is
// cancelled when the lock is lost.
//
// # What a lock does and does not guarantee
//
// It is NOT safe to assume that a lock is held until Release. A lock can be
// lost at any time: it expires when it is not refreshed in time (a GC pause,
// a stopped VM, a slow network), and Redis can forget it. A holder must
// handle the loss: watch Lock.Done, or run the work under Lock.Context (as
// Do does with fn's ctx), and keep critical sections
// shorter than the TTL or use WithAutoRefresh. The library reports a loss as
// soon as it learns of it and never later than Lock.ValidUntil, but it
// cannot stop code that is already running.
//
//   - A single-node lock (Locker) excludes other holders as long as that
//     Redis keeps its data. A restart without persistence, or a failover to
//     a replica that had not yet received the lock (replication is
//     asynchronous), can let a second holder in while the first still
//     believes it holds the lock. Fencing does not save that case: the
//     fence counter is lost with the lock, so the second holder can draw
//     the same fence as the first. A Locker is good for efficiency (do not
//     do work twice), and for correctness with fencing only as long as its
//     Redis keeps its data.
//   - A Redlock over N independent nodes (not replicas of each other) keeps
//     the lock while a majority of them keeps it, so one node's crash or
//     restart does not break exclusion. It assumes bounded clock drift and
//     pauses shorter than the TTL; it is not a consensus system. Restarted
//     nodes must either persist with fsync or stay down for a TTL before
//     rejoining.
//   - A fencing token (WithFencing, Lock.Fence) is the only protection
//     against a holder that was paused past its TTL and wakes up still
//     acting: the guarded resource records the highest fence it has seen and
//     rejects writes carrying a lower one. Fences come from a counter in
//     Redis that never expires; a node that loses its data (a restart
//     without persistence, a failover to a replica that had not received
//     the last increment) loses the counter too, and a fence can then repeat.
//     Persist the nodes if you rely on fencing, and do not count on it
//     across a failover of a single-node Locker.
//
// # Locker or Redlock
//
// Use a Locker when one Redis deployment (a single primary, Sentinel or
// Cluster) is enough: it is the cheapest (one round trip per call), and a
// lock is as safe as that deployment. Use a Redlock over 3 or 5 independent
// primaries (not replicas of each other) when a lock must survive the crash
// or isolation of a minority of them: each call goes to every node at once
// and needs N/2+1 of them, so it costs about one round trip to the slowest
// node it waits for, and works only while a majority is reachable. Redlock
// nodes must not forget: run them with appendonly yes and appendfsync
// always, or keep a node that restarted without its data out of service for
// at least the longest TTL in use ("delayed restart"). Validity is measured
// on this process's monotonic clock from the start of the attempt, minus
// TTL×drift + 2ms, while nodes expire keys on their own clocks: the scheme
// assumes clocks that run at about the same rate and pauses and network
// delays well below the TTL. Neither replaces fencing.
//
// # Waiting
//
// WithBlocking waits without polling and, on a Locker, by default in
// turn: first come, first served across processes. WithFairness(false)
// makes blocked callers barge instead, as a Redlock's always do.
//
// Fair waiting. A blocked caller of a Locker queues in Redis, next to the
// lock; the callers of one Locker blocked on one key share one place in
// that queue and wait behind each other in the process. A release (of any
// Lock of the key) hands the lock straight to the first live waiter of the
// queue in the release script itself: it sets the heir's token (and draws
// its fence, with WithFencing), so the lock is never free in between, and
// it wakes only that waiter, on a channel of its own. An uncontended
// Obtain and Release cost what they cost without fairness: SET NX, and one
// release script that finds no queue. A waiter that cannot take its turn
// does not hold the queue:
//
//   - its process died: its turn is passed over as soon as Redis has seen
//     its connection close (nobody listens on its channel any more);
//   - its ctx ended: it leaves the queue with its Locker's last caller (one
//     round trip), and a turn that reached it as it left is given back
//     (the Locker listens on the place's channel for 2s after it left);
//   - it lost Redis or its process stopped: its place expires 2s after its
//     Locker last refreshed it (the Locker refreshes its places every
//     0.5s, or every TTL/8 when that is shorter), and is passed over from
//     then on; back, the Locker queues again, at the end. A turn handed to
//     it within those 2s stays with it until its TTL, as a lock does whose
//     holder vanished. On a Redis Cluster, where subscribers on other nodes
//     are not counted, a dead process's place is likewise passed over 2s
//     after its last refresh.
//
// A handed-over lock's validity counts from the last refresh of the
// waiter's place that Redis saw before the release (at most 0.5s, or TTL/8,
// before it), since the waiter cannot know when the release ran. A Locker
// keeps its place for 1s after its last blocked caller got the lock, ready
// for its next one (a turn that comes meanwhile is given back at once, and
// a waiter behind it that finds the lock free makes it leave). A blocked
// caller also re-checks at its holder's expiry (expiry hands nothing over)
// and after the retry strategy's fallback delay; a turn whose message went
// unheard (a subscription that reconnected) is taken at that re-check, or,
// when none of the Locker's callers waits any more, given back as soon as
// the subscription is back. Callers that barge meanwhile (Obtain without
// WithBlocking, and blocked callers with WithToken or WithReplicas, or on a
// Locker whose Redis user may not run the queue's list commands) get the
// lock only when nobody is queued for it; use one mode for one key in every
// process. Once's waiters, and every Redlock's, barge: a quorum of queues
// on independent nodes gives no one order.
//
// Barging (WithFairness(false), and always on a Redlock). The release
// script (and Once's finish) publishes on the lock's channel, a blocked
// caller is subscribed to it (one shared subscription connection per
// Locker, opened while someone waits) and retries at once when the lock is
// released. Expiry publishes nothing, so each wait is also capped by the
// holder's remaining TTL, and, in case a wake-up was missed, by a fallback
// re-check: the retry strategy's delay (WithRetry; its limit does not
// apply), or a jittered 200ms doubling to 2s without one. Without
// WithBlocking, the retry strategy's delays are the pauses between attempts
// (default: one attempt). Blocked callers of one Locker for one key queue
// in arrival order and send one attempt per release between them, so a busy
// process costs Redis one attempt per release, not one per goroutine. A
// holder's release hands the lock straight to the first blocked caller of
// the same Locker (one script, the lock never free), at most 7 times in a
// row, so that other processes are not starved; between processes barging
// callers race, the first attempt to arrive wins, often the releaser's own.
// On a Redis Cluster (a *redis.ClusterClient) releases and turns publish
// with SPUBLISH and blocked callers listen with SSUBSCRIBE, so that a
// release reaches only the key's shard (a waiter's own channel shares its
// lock's slot); the subscription follows its slot across a failover or a
// reshard, and its waiters re-check once it is back (within 2s once the
// cluster has settled). Servers before Redis 7.0 get PUBLISH and SUBSCRIBE.
//
// # Observing
//
// WithObserver (on New or NewRedlock for every call, or on one call) sends
// an Event for each thing that happens to a lock. A call that obtains
// (Obtain, Do, Once, OncePerTick, ClaimTick, Lead) reports EventContended
// for each attempt that found the key held, on a Redlock first one
// EventNode per node per attempt, and then its outcome: EventObtained (with
// the wait, the attempt count and the fence) or EventNotObtained (with the
// error). The Lock it obtained goes on reporting to the same observer: each
// refresh (EventRefreshed, marked Late when it came in the last third of
// the validity; EventRefreshFailed on a transient error) and, once, its
// end: EventReleased, EventHandedOver (a release that passed the lock to a
// waiter: of the same Locker, or the first one queued for it when waiting
// in turn) or EventLost (with the cause, also when
// Release is the one to find the lock gone). Events carry the key, never
// the token. SlogObserver logs them with log/slog; contrib/otel records
// OpenTelemetry metrics and spans. The observer runs on the lock's own
// path, so it must be quick; without one, nothing is reported and nothing
// is allocated.
//
// # Options and calls
//
// Options given to New or NewRedlock are defaults for every call; given to
// a call they override them. Not every option means something to every
// call. An option that would promise what the call cannot give is
// rejected with ErrInvalidArgument when given to that call ("rejected");
// one that only tunes how a call works is accepted and ignored where it
// has no use ("-"), so that one option list can serve several calls, and a
// Locker and a Redlock alike (see LockService). Defaults of New and
// NewRedlock are never rejected (except WithToken, which only a call can
// take, and WithReplicas on a Redlock): a call leaves out those it cannot
// use.
//
//	option           Obtain, Do      Once       OncePerTick, ClaimTick  Lead       Status
//	WithTTL          yes             yes [1]    yes [2]                 yes        -
//	WithRetry        yes             yes        - (tries once)          yes [3]    -
//	WithBlocking     yes             yes [4]    - (never waits)         always     -
//	WithAutoRefresh  yes; Do always  always     always                  always     -
//	WithFencing      yes [5]         rejected   - [6]                   yes [5]    -
//	WithToken        yes             rejected   yes                     yes        -
//	WithKeyPrefix    yes             yes        yes                     yes        yes
//	WithOwner        yes             yes [8]    yes                     yes        -
//	WithDriftFactor  yes             yes        yes                     yes        -
//	WithNodeTimeout  Redlock only    Redlock    Redlock                 Redlock    Redlock
//	WithPipelining   New and NewRedlock only; ignored by every call
//	WithReplicas     Locker only     rejected   Locker only             Locker     -
//	WithShared       Locker [7]      rejected   rejected                rejected   -
//	WithLimit        Locker [7]      rejected   rejected                rejected   -
//	WithFairness     Locker [9]      - (barges) - (never waits)         Locker [9] -
//
// [1] The TTL of the hold while fn runs (refreshed every TTL/3), not the
// window. [2] The liveness TTL of the claim; the tick stays taken until its
// window is over in any case. [3] The fallback re-check interval of a
// candidate. [4] Waits for the outcome of the run in progress. [5] Do
// draws a fence, but fn cannot read it: use Obtain to hand Lock.Fence to
// the resource; Lead's fn reads its term's fence with LeaderLock(ctx). [6] Every tick has a key of its own, so its fence would
// always be 1; TickClaim.Tick, which grows from tick to tick, plays that
// role. [7] Per call only (New and NewRedlock reject them as defaults: they
// choose the kind of lock a call takes); a Redlock rejects them (see
// WithLimit); with them WithToken and WithReplicas are rejected.
// [8] The done marker keeps the label of the run that did the work.
// List and ForceRelease take the options of Status: WithKeyPrefix, and
// WithNodeTimeout for a Redlock's ForceRelease; they ignore the others.
//
// ObtainMulti takes the options of Obtain and rejects WithToken: a
// caller's token would let the clean-up of a failed attempt delete a live
// hold.
//
// [9] A Redlock rejects WithFairness(true), as a default of NewRedlock
// too. Shared leases (WithShared, WithLimit) and ObtainMulti never queue:
// they barge whatever WithFairness says.
//
// Once rejects WithToken because it draws a fresh token per run (a shared
// token would let two callers run at once) and WithFencing because fn gets
// no Lock to read the fence from, and WithReplicas because its done marker
// is not acknowledged by replicas. A Redlock rejects WithReplicas, as a
// default of NewRedlock too: its nodes are independent primaries.
// WithNodeTimeout is ignored by a Locker,
// whose calls are bounded by ctx and the client's timeouts, so that the
// same options work on a Redlock.
//
// # Keys
//
// For a lock named K the library writes "<prefix>{K}" (the lock, holding
// the holder's token followed by NUL, "owner:" and its owner label, or
// for Once a done marker until the window ends) and "<prefix>{K}:fence"
// (the fence counter), after a force release "<prefix>{K}:forced:<SHA-1>"
// (a marker for the old holder that expires with its lock's TTL), and
// publishes releases on the channel "<prefix>{K}:wake" (a shard channel on
// a Cluster). Shared leases (WithShared, WithLimit) keep a marker in
// "<prefix>{K}", their leases in the sorted set "<prefix>{K}:shared" and
// waiting writers' claims in "<prefix>{K}:writers". Keys are written with
// '{', '}' and '%' in the prefix and K percent-escaped, so that the keys of
// one lock share a Redis Cluster slot whatever K holds. The default prefix
// is "distlock:". A multi-key lock (ObtainMulti) writes these same keys
// for each of its keys, all with one token.
// While callers wait their turn it also writes "<prefix>{K}:q" (the
// queue: a list of place ids) and "<prefix>{K}:q:<id>" (each place,
// expiring 2s after its last refresh), and publishes turns on
// "<prefix>{K}:wake:<id>".
//
// # Errors
//
// Errors are matchable with errors.Is: ErrNotObtained (held by someone
// else: in progress), ErrAlreadyDone (Once: the work was done within the
// window), ErrNotHeld (lost or released: expired, deleted or taken over),
// ErrUnknownOutcome (a Release whose answer was lost: the lock may or may
// not be released yet, and nobody else holds it; Release may be called
// again), ErrNotReplicated (WithReplicas: fewer replicas acknowledged the
// lock than asked; a *ReplicationError says how many), ErrForceReleased
// (an operator force-released the lock; it matches ErrNotHeld too),
// ErrInvalidArgument (bad input, with the problem named; also WithToken
// given to New or NewRedlock, and a Redlock of fewer than 3 nodes). A Redlock's errors
// carry a *QuorumError (errors.As) with one *NodeError per failing node; a
// node that did not answer in time matches ErrNodeTimeout, one that refused
// the connection does not. Redis errors are returned wrapped, never
// disguised as ErrNotObtained. Every error prints on one line. No call
// panics on bad input.
package distlock
