// Package distlock provides distributed locks on Redis for Go services that
// run on several machines and must do one thing once: run a scheduled job on
// one replica per tick, submit a payment once, not oversell stock, rebuild a
// cache entry in one request while the others wait, keep one active leader.
//
// A Locker takes locks on one Redis deployment with SET key token NX PX ttl
// (or one script doing the same when a fencing token or the holder's TTL is
// wanted) and releases them with a compare-and-delete script; a Redlock
// takes a quorum over N independent Redis nodes. Both return a *Lock:
//
//	lock, err := locker.Obtain(ctx, "report:daily", distlock.WithTTL(10*time.Second))
//	if errors.Is(err, distlock.ErrNotObtained) {
//		return nil // someone else runs it
//	}
//	if err != nil {
//		return err // Redis is down, or bad input
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
// handle the loss: watch Lock.Done (or Do's ctx), and keep critical sections
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
// WithBlocking waits without polling: the release script publishes on the
// lock's channel, a blocked caller is subscribed to it (one shared
// subscription connection per Locker, opened while someone waits) and
// retries at once when the lock is released. Expiry publishes nothing, so
// each wait is also capped by the holder's remaining TTL, and by the retry
// strategy's delay as a fallback. Blocked callers of one Locker for one key
// queue in arrival order and send one attempt per release between them, so
// a busy process costs Redis one attempt per release, not one per
// goroutine. A holder's release hands the lock straight to the first
// blocked caller of the same Locker (one script, the lock never free), at
// most 7 times in a row, so that other processes are not starved.
//
// # Keys
//
// For a lock named K the library writes "<prefix>{K}" (the lock) and
// "<prefix>{K}:fence" (the fence counter), and publishes releases on the
// channel "<prefix>{K}:wake", with '{', '}' and '%' in the
// prefix and K percent-escaped, so that the keys of one lock share a Redis
// Cluster slot whatever K holds. The default prefix is "distlock:".
//
// # Errors
//
// Errors are matchable with errors.Is: ErrNotObtained (held by someone
// else), ErrNotHeld (lost or released: expired, deleted or taken over),
// ErrUnknownOutcome (a Release whose answer was lost: the lock may or may
// not be released yet, and nobody else holds it; Release may be called
// again), ErrInvalidArgument (bad input, with the problem named; also
// WithToken given to New or NewRedlock, and a Redlock of fewer than 3
// nodes). A Redlock's errors carry a *QuorumError (errors.As) with one
// *NodeError per failing node; a node that did not answer in time matches
// ErrNodeTimeout, one that refused the connection does not. Redis errors
// are returned wrapped, never disguised as ErrNotObtained. Every error
// prints on one line. No call panics on bad input.
package distlock
