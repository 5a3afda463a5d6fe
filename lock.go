package distlock

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Locker takes locks on one Redis deployment (a single node, a primary
// with replicas behind Sentinel, or a Redis Cluster). Create it with New; it
// is safe for concurrent use and holds no goroutine of its own.
//
// A single-node lock is as safe as that node: if it restarts without
// persistence, or fails over to a replica that had not yet received the lock
// (replication is asynchronous), a second holder can get the same lock.
// Fencing does not help against that failover: the fence counter lives on
// the same node and is lost with the lock, so the new holder can draw the
// same fence as the stale one, and the guarded resource cannot tell them
// apart. WithFencing protects against a holder paused past its TTL on a
// deployment that keeps its data. WithReplicas closes the failover case: a
// lock (and fence) that n replicas acknowledged survives a failover to one
// of them. Against the loss of a node's data use a Redlock over independent
// nodes (with persistence: see Redlock).
type Locker struct {
	conns   *conns // the client, and its autopipeliner for concurrent calls
	opts    options
	waiters *waiters // blocked callers, woken on release
	err     error    // set by New on bad input, returned by every call
}

// New returns a Locker that takes locks through client, with opts as the
// default options of every Obtain and Do. A nil client does not panic: every
// call of the returned Locker fails with an error matching
// ErrInvalidArgument. So does WithToken among opts: it is a per-call option
// only (as a default, every Obtain would re-attach to the lock of every
// other caller, and none would exclude another).
//
// Calls are bounded by their ctx only as far as the client allows: go-redis
// applies ctx deadlines to socket I/O only with
// redis.Options.ContextTimeoutEnabled, and otherwise its ReadTimeout and
// WriteTimeout bound each command. Keep those well below the TTL.
//
// Callers blocked in Obtain (WithBlocking) share one subscription
// connection per Locker, on which releases are announced; it is opened
// when the first caller starts waiting and closed when the last one stops,
// so an idle Locker holds no connection or goroutine of its own.
//
// Unless WithPipelining(false) is given, New asks client for its
// autopipeliner (client.AutoPipeline), so that lock commands from concurrent
// goroutines share round trips; a command sent while no other is in flight
// goes through the plain client. The autopipeliner lives as long as the
// client: Close the client to stop it.
func New(client redis.UniversalClient, opts ...Option) *Locker {
	lk := &Locker{opts: defaultOptions().with(opts)}
	if isNil(client) {
		lk.err = invalidf("nil Redis client")
		return lk
	}
	if lk.opts.token != "" {
		lk.err = errTokenDefault
		return lk
	}
	lk.conns = newConns(client, lk.opts.pipelining)
	lk.waiters = newWaiters([]redis.UniversalClient{client})
	return lk
}

// check returns the error every call of lk fails with, if any: bad input
// to New, or a Locker not made by New.
func (lk *Locker) check() error {
	if lk == nil || (lk.err == nil && lk.conns == nil) {
		return invalidf("Locker not created by New")
	}
	return lk.err
}

// isNil reports whether an interface holds nil or a nil pointer.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

// callOptions resolves and checks the options of one call.
func callOptions(defaults options, key string, opts []Option) (options, error) {
	o := defaults.with(opts)
	if key == "" {
		return o, invalidf("empty key")
	}
	return o, o.validate()
}

// Obtain takes the lock named key. By default it tries once and returns an
// error matching ErrNotObtained when someone else holds the lock; WithRetry
// and WithBlocking make it try again. When ctx ends first the error matches
// both ErrNotObtained and ctx.Err(). A Redis error is returned wrapped, never
// as ErrNotObtained; bad input returns an error matching ErrInvalidArgument.
//
// The returned Lock is held until Release, until ValidUntil unless refreshed
// (WithAutoRefresh does that), or until Redis says it is gone; Done and Err
// tell which.
func (lk *Locker) Obtain(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	if err := lk.check(); err != nil {
		return nil, fmt.Errorf("obtain %q: %w", key, err)
	}
	o, err := callOptions(lk.opts, key, opts)
	if err != nil {
		return nil, fmt.Errorf("obtain %q: %w", key, err)
	}
	rk := lockKey(o.prefix, key)
	// The plain SET NX PX path needs no script; the script is needed to draw
	// a fence, to re-attach a caller's token, or to learn the holder's TTL
	// so that a blocked caller never sleeps past the holder's expiry.
	plain := !o.fencing && o.token == "" && !o.blocking
	var notReplicated error // the last attempt's, while retries are left
	try := func(ctx context.Context) (*Lock, time.Duration, error) {
		// A fresh token per attempt: the clean-up of a failed attempt
		// (which may land late) can then never delete what a later
		// attempt took, as it would if that attempt re-took the key
		// through acquire.lua's re-attach rule with the same token.
		token := attemptToken(o)
		start := time.Now()
		notReplicated = nil
		ok, fence, holderTTL, err := lk.acquire(ctx, plain, rk, token, o)
		if errors.Is(err, ErrNotReplicated) {
			// The lock was given back: retried like contention, with the
			// strategy's delay (holder TTL unknown).
			notReplicated = err
			return nil, -1, nil
		}
		if err != nil {
			if o.token == "" {
				// Only a fresh token is surely ours alone: a caller's
				// token may be that of a live Lock being re-attached to.
				lk.abandon(ctx, err, rk, token)
			}
			return nil, 0, err
		}
		if !ok {
			return nil, holderTTL, nil
		}
		l := newLock(lk, key, rk, token, fence, o, start)
		if l == nil {
			// Obtained too late to be of use: the validity is already
			// spent. Give the key back and count it as not obtained.
			if o.token == "" {
				lk.abandon(ctx, nil, rk, token)
			}
			return nil, 0, nil
		}
		return l, 0, nil
	}
	l, err := obtainWaiting(ctx, key, rk, o, lk.waiters, try, &heir{ctx: ctx, key: key, o: o})
	if err != nil && notReplicated != nil && ctx.Err() == nil {
		// The last attempt failed for want of replicas, not contention.
		return nil, fmt.Errorf("obtain %q: %w", key, notReplicated)
	}
	return l, err
}

// attemptToken returns the value one attempt to take a lock stores: its
// token, the caller's (WithToken) or else a fresh random UUID never reused
// by another attempt, with the owner label (owner.go).
func attemptToken(o options) string {
	if o.token != "" {
		return storedValue(o.token, o.owner)
	}
	return newStoredValue(o.owner)
}

// acquire makes one attempt on the node. holderTTL is the remaining TTL of
// the current holder when known, else -1.
func (lk *Locker) acquire(ctx context.Context, plain bool, rk, token string, o options) (ok bool, fence int64, holderTTL time.Duration, err error) {
	if o.repl.n > 0 {
		return lk.acquireReplicated(ctx, rk, token, o)
	}
	run := lk.conns.get()
	defer lk.conns.done()
	if plain {
		// Never re-sent: a second SET NX would find this attempt's own key
		// and answer "held by another".
		cmd := redis.NewCmd(ctx, "set", rk, token, "px", o.ttl.Milliseconds(), "nx")
		switch err := run.Process(ctx, onceCmd{cmd}); {
		case err == nil:
			return true, 0, 0, nil
		case errors.Is(err, redis.Nil):
			return false, 0, -1, nil
		default:
			return false, 0, 0, err
		}
	}
	fenceFlag := o.fenceFlag()
	res, err := acquireScript.Run(ctx, run, []string{rk, fenceKey(rk)}, token, o.ttl.Milliseconds(), fenceFlag).Int64Slice()
	if err != nil {
		return false, 0, 0, err
	}
	if len(res) != 2 {
		return false, 0, 0, fmt.Errorf("distlock: unexpected acquire reply %v", res)
	}
	if res[0] == 1 {
		return true, res[1], 0, nil
	}
	return false, 0, msTTL(res[1]), nil
}

// msTTL converts a PTTL reply to a holder TTL: -1 when unknown (no expiry),
// 0 when the key is already gone.
func msTTL(ms int64) time.Duration {
	switch {
	case ms == -2:
		return 0
	case ms < 0:
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// abandon gives back a lock whose attempt failed after the command may have
// reached Redis (a timeout, a cancelled ctx, or a validity already spent),
// so that it does not sit there until its TTL. It is best effort and bounded
// by abandonTimeout. A Redis error reply means nothing was written.
func (lk *Locker) abandon(ctx context.Context, cause error, rk, token string) {
	var rerr redis.Error
	if cause != nil && errors.As(cause, &rerr) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	run := lk.conns.get()
	defer lk.conns.done()
	_ = releaseScript.Run(ctx, run, []string{rk}, token).Err()
}

// abandonTimeout bounds the clean-up of a failed attempt, as far as the
// client applies ctx deadlines: a command through the autopipeliner, or a
// plain command on a client with redis.Options.ContextTimeoutEnabled.
// Otherwise a plain command is bounded by the client's WriteTimeout and
// ReadTimeout (go-redis defaults: 3s each), and a dial by its DialTimeout
// (5s); keep those short where a stalled node must not hold up a failed
// Obtain.
const abandonTimeout = 250 * time.Millisecond

// Do runs fn while holding the lock named key, and releases it when fn
// returns. The lock is auto-refreshed; fn's ctx is cancelled as soon as the
// lock is lost (context.Cause then matches ErrNotHeld). Do returns fn's
// error; when the lock was lost while fn ran, the error also matches
// ErrNotHeld. When the lock cannot be obtained fn does not run and Do
// returns Obtain's error (ErrNotObtained when held by someone else).
func (lk *Locker) Do(ctx context.Context, key string, fn func(context.Context) error, opts ...Option) error {
	if fn == nil {
		return fmt.Errorf("do %q: %w", key, invalidf("nil fn"))
	}
	l, err := lk.Obtain(ctx, key, withAutoRefresh(opts)...)
	if err != nil {
		return err
	}
	return l.guard(ctx, fn)
}

// withAutoRefresh returns a copy of opts with WithAutoRefresh appended.
func withAutoRefresh(opts []Option) []Option {
	all := make([]Option, 0, len(opts)+1)
	return append(append(all, opts...), WithAutoRefresh())
}

// The node backend: the Lock's Redis operations on one deployment.

func (lk *Locker) refresh(ctx context.Context, l *Lock, ttl time.Duration) error {
	if l.repl.n > 0 {
		return lk.refreshReplicated(ctx, l, ttl)
	}
	run := lk.conns.get()
	defer lk.conns.done()
	n, err := refreshScript.Run(ctx, run, []string{l.rkey}, l.token, ttl.Milliseconds()).Int64()
	if err != nil {
		return err
	}
	return refreshAnswer(n)
}

func (lk *Locker) release(ctx context.Context, l *Lock) error {
	if tk := lk.waiters.claim(l.rkey); tk != nil {
		return lk.handOver(ctx, l, tk)
	}
	op := nodeOp{script: releaseScript, src: releaseSrc, keys: []string{l.rkey}, args: []any{l.token}}
	run := lk.conns.get()
	n, err := sendOnce(ctx, run, &op).Int64()
	lk.conns.done()
	if err != nil {
		err = unknownOutcome(err)
		if errors.Is(err, ErrUnknownOutcome) {
			l.releaseUnsure.Store(true)
		}
		return err
	}
	if n == releasedUnannounced {
		lk.waiters.lostWakeups.Add(1)
	}
	return l.releaseFound(n)
}

// releaseFound turns release.lua's answer into Release's error. A lock
// found not held while it was still valid, after a release of unknown
// outcome, was deleted by that release: gone, or taken since by another
// holder, who could not have taken it from a valid lock otherwise.
func (l *Lock) releaseFound(n int64) error {
	switch {
	case n == 1 || n == releasedUnannounced:
		return nil
	case l.releaseUnsure.Load() && time.Now().Before(l.ValidUntil()):
		return nil
	case n == releaseForced:
		return ErrForceReleased
	case n < 0:
		return errTakenOver
	}
	return errVanished
}

// sendOnce runs op's script (EVALSHA, then EVAL on NOSCRIPT) through run, and
// never lets go-redis send it a second time after a network error: the
// first may have run, and a second run would answer for what the first
// did (a release finding nothing left to release).
func sendOnce(ctx context.Context, run runner, op *nodeOp) *redis.Cmd {
	cmd := op.cmd(ctx, false)
	if err := run.Process(ctx, onceCmd{cmd}); isNoScript(err) {
		cmd = op.cmd(ctx, true)
		_ = run.Process(ctx, onceCmd{cmd})
	}
	return cmd
}

// onceCmd is a command go-redis must not re-send after a network error.
type onceCmd struct{ *redis.Cmd }

// NoRetry implements redis.Cmder.
func (onceCmd) NoRetry() bool { return true }

func (lk *Locker) pttl(ctx context.Context, l *Lock) (time.Duration, error) {
	run := lk.conns.get()
	defer lk.conns.done()
	ms, err := pttlScript.Run(ctx, run, []string{l.rkey}, l.token).Int64()
	if err != nil {
		return 0, err
	}
	if ms == pttlNotHeld {
		return 0, errGone
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// backend is where a Lock's refresh, release and TTL go: one deployment
// (Locker) or a quorum of nodes (Redlock). Each returns an error matching
// ErrNotHeld when the lock is no longer held by the Lock's token.
type backend interface {
	refresh(ctx context.Context, l *Lock, ttl time.Duration) error
	release(ctx context.Context, l *Lock) error
	pttl(ctx context.Context, l *Lock) (time.Duration, error)
}

var (
	_ backend = (*Locker)(nil)
)

// A Lock is one holder's hold on a lock, returned by Obtain. Its methods are
// safe for concurrent use.
//
// Holding a Lock is not proof of holding the lock: a lock can be lost at any
// time (it expires when not refreshed in time, the Redis node forgets it, a
// pause of this process outlasts its TTL). Done and Err report a loss as soon
// as the library learns of it, and never later than ValidUntil; code that
// must never act on a lost lock also checks a fencing token at the resource.
type Lock struct {
	b      backend
	key    string // as the caller gave it
	rkey   string // the Redis key
	token  string // the stored value: the secret token and the owner label (owner.go)
	fence  int64
	ttl    time.Duration
	drift  float64
	repl   replication // WithReplicas: acknowledged refreshes
	onLost func(error) // set by cancelOnLoss; called once on loss

	// releaseUnsure is set by the backend when a release of unknown
	// outcome was sent: a later release that finds the lock gone while it
	// is still valid knows that release deleted it.
	releaseUnsure atomic.Bool

	refreshMu sync.Mutex // serialises refreshes, so validity follows the last one

	mu         sync.Mutex
	validUntil time.Time
	ended      bool          // released or lost: done is (or will be made) closed
	released   bool          // a release reached Redis: a second one returns ErrNotHeld
	err        error         // why the lock was lost; nil while held and after Release
	refreshErr error         // the last refresh's transient error, nil after a success
	done       chan struct{} // made lazily by Done (eagerly with auto-refresh)
	timer      *time.Timer   // closes done at validUntil

	stopRefresh context.CancelFunc // stops the refresher, nil without one
	refresher   chan struct{}      // closed when the refresher has returned
}

// newLock returns the Lock of an attempt that started at start, or nil when
// its validity is already spent.
func newLock(b backend, key, rkey, token string, fence int64, o options, start time.Time) *Lock {
	until := start.Add(o.ttl - o.driftFor(o.ttl))
	if !time.Now().Before(until) {
		return nil
	}
	l := &Lock{b: b, key: key, rkey: rkey, token: token, fence: fence, ttl: o.ttl, drift: o.drift, repl: o.repl, validUntil: until}
	if o.autoRefresh {
		l.mu.Lock()
		l.makeDoneLocked()
		l.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		l.stopRefresh = cancel
		l.refresher = make(chan struct{})
		go l.refreshLoop(ctx)
	}
	return l
}

// Key returns the lock's name as given to Obtain (without the key prefix).
func (l *Lock) Key() string { return l.key }

// Token returns this holder's secret token: whoever has it can release,
// refresh or re-attach to the lock (WithToken).
func (l *Lock) Token() string { return tokenOf(l.token) }

// Fence returns the fencing token drawn when the lock was obtained with
// WithFencing: strictly greater than every fence handed out before for the
// key. It is 0 without WithFencing.
func (l *Lock) Fence() int64 { return l.fence }

// ValidUntil returns the local time until which the lock is guaranteed,
// measured on the monotonic clock from the start of the attempt (or refresh)
// that last confirmed it: start + TTL − (TTL×drift factor + 2ms). Past it the
// lock may belong to someone else.
func (l *Lock) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

// TTL asks Redis how long the lock still lives. It returns an error matching
// ErrNotHeld when this holder no longer has it (and ends the Lock), and a
// wrapped Redis error when Redis cannot answer. A lock key with no expiry
// (someone removed it) reports -1ms.
func (l *Lock) TTL(ctx context.Context) (time.Duration, error) {
	if err := l.heldErr(); err != nil {
		return 0, fmt.Errorf("ttl %q: %w", l.key, err)
	}
	d, err := l.b.pttl(ctx, l)
	if err != nil {
		if errors.Is(err, ErrNotHeld) {
			l.lose(err)
		}
		return 0, fmt.Errorf("ttl %q: %w", l.key, err)
	}
	return d, nil
}

// Refresh extends the lock to ttl from now; ttl 0 means the TTL it was
// obtained with. It returns an error matching ErrNotHeld when the lock is no
// longer held (and ends the Lock: Done closes), ErrInvalidArgument for a
// negative ttl or one not above the drift allowance, and a wrapped Redis
// error when Redis cannot answer (the lock stays held until ValidUntil).
// A later auto-refresh uses the TTL the lock was obtained with.
func (l *Lock) Refresh(ctx context.Context, ttl time.Duration) error {
	if ttl == 0 {
		ttl = l.ttl
	}
	o := options{drift: l.drift}
	if err := o.checkTTL(ttl); err != nil {
		return fmt.Errorf("refresh %q: %w", l.key, err)
	}
	l.refreshMu.Lock()
	defer l.refreshMu.Unlock()
	if err := l.heldErr(); err != nil {
		return fmt.Errorf("refresh %q: %w", l.key, err)
	}
	start := time.Now()
	if err := l.b.refresh(ctx, l, ttl); err != nil {
		if errors.Is(err, ErrNotHeld) {
			if errors.Is(err, errExpired) {
				l.mu.Lock()
				err = l.expiredErrLocked()
				l.mu.Unlock()
			}
			l.lose(err)
		} else {
			l.mu.Lock()
			l.refreshErr = err
			l.mu.Unlock()
		}
		return fmt.Errorf("refresh %q: %w", l.key, err)
	}
	l.mu.Lock()
	l.refreshErr = nil
	if !l.ended {
		l.validUntil = start.Add(ttl - o.driftFor(ttl))
		if l.timer != nil {
			// A shorter TTL moves the end earlier than the timer is set
			// for; onTimer re-arms itself when the end moved later.
			l.timer.Reset(time.Until(l.validUntil))
		}
	}
	l.mu.Unlock()
	return nil
}

// Release gives the lock back: it stops the auto-refresher, deletes the
// lock in Redis if this holder still has it (or, when a caller of the same
// Locker is blocked on the key, hands it straight to that caller), and
// closes Done. It returns an error matching ErrNotHeld when the lock was no
// longer held (lost, or already released), and one matching
// ErrUnknownOutcome when the release was sent but its answer was lost (the
// lock is deleted or stays until its TTL; nobody else holds it meanwhile;
// a second Release tells which). It never deletes someone else's lock. On a
// Redis error the lock is ended locally, stays in Redis until its TTL at
// most, and Release may be called again.
//
// Release frees the lock whatever the state of ctx, so that
// defer l.Release(ctx) works with a request's ctx that has already ended:
// it ignores ctx's cancellation and gives itself until ctx's deadline or
// releaseTimeout (1s) from the call, whichever is later. That bound covers
// the whole call, including the wait for an auto-refresh in flight (a
// hand-over whose waiter left meanwhile adds the release of the waiter's
// new lock, bounded the same way); with
// a plain client it holds as far as the client lets it (go-redis applies
// deadlines to socket reads and writes only with
// redis.Options.ContextTimeoutEnabled, otherwise its ReadTimeout and
// WriteTimeout bound the command). A second Release, or one after the
// lock's validity ran out, returns an error matching ErrNotHeld at once,
// without a round trip (except after ErrUnknownOutcome, when a second
// Release asks Redis what became of the first); after a loss that Redis reported it returns that
// loss, once it has cleaned up what may be left of the lock.
func (l *Lock) Release(ctx context.Context) error {
	lost, final := l.knownEnd()
	if final {
		l.stopRefresher(nil)
		return fmt.Errorf("release %q: %w", l.key, lost)
	}
	ctx, cancel := releaseContext(ctx)
	defer cancel()
	if l.stopRefresh != nil {
		// Stop the refresher first, but do not wait for a refresh in
		// flight before releasing: whichever of the two Redis runs
		// first, the other finds nothing to do.
		l.stopRefresh()
	}
	err := l.b.release(ctx, l)
	l.stopRefresher(ctx.Done())

	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil || errors.Is(err, ErrNotHeld) {
		l.released = true
	}
	switch {
	case err == nil:
		// This release deleted the lock with this holder's token, so it
		// was held: a racing refresh that ran after the deletion and
		// reported the lock gone was wrong about why.
		l.err = nil
	case errors.Is(err, ErrNotHeld) && l.err == nil && !l.ended:
		l.err = err
	}
	l.endLocked()
	if lost != nil {
		// Redis said the lock was gone: the release above only cleaned
		// up (a Redlock's minority of nodes that still had the key).
		return fmt.Errorf("release %q: %w", l.key, lost)
	}
	if err != nil {
		return fmt.Errorf("release %q: %w", l.key, err)
	}
	return nil
}

// releaseTimeout is the least time Release gives itself, whatever ctx says.
const releaseTimeout = time.Second

// releaseContext returns the context Release runs on: ctx's values without
// its cancellation, with a deadline at ctx's deadline or releaseTimeout from
// now, whichever is later.
func releaseContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(releaseTimeout)
	if d, ok := ctx.Deadline(); ok && d.After(deadline) {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// knownEnd returns why the lock is known to be no longer held, if it is,
// and whether that is final: the lock was released, or its validity ran
// out (its keys then expire within the drift allowance, so there is
// nothing to clean up, and Redis may well be unreachable). A loss that
// Redis reported (lost, not final) still lets Release clean up: a Redlock's
// minority of nodes may still have the key.
func (l *Lock) knownEnd() (lost error, final bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkExpiryLocked()
	switch {
	case l.released:
		return errReleased, true
	case l.err != nil:
		return l.err, errors.Is(l.err, errExpired)
	}
	return nil, false
}

// Done returns a channel that is closed once the lock is no longer held by
// this holder: after Release, at ValidUntil when nothing refreshed it, or as
// soon as a refresh (or TTL) learns that the lock is gone. Err tells which.
func (l *Lock) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkExpiryLocked() // do not wait for the timer after a stall (e.g. SIGSTOP)
	l.makeDoneLocked()
	return l.done
}

// Err returns nil while the lock is held and after a successful Release,
// and an error matching ErrNotHeld once the lock was lost: it expired
// before a refresh confirmed it (the error then also wraps the last
// refresh's error, when one failed: errors.Is matches both), or Redis no
// longer holds it for this token.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkExpiryLocked()
	return l.err
}

// heldErr returns nil while the lock is held and otherwise the reason.
func (l *Lock) heldErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkExpiryLocked()
	switch {
	case l.err != nil:
		return l.err
	case l.ended:
		return errReleased
	}
	return nil
}

// checkExpiryLocked ends a held lock whose validity has run out.
func (l *Lock) checkExpiryLocked() {
	if !l.ended && !time.Now().Before(l.validUntil) {
		l.loseLocked(l.expiredErrLocked())
	}
}

// expiredErrLocked is the error of a lock whose validity ran out: errExpired,
// with the last refresh's error as its cause when a refresh failed (Redis
// unreachable, say). Both match (errors.Is).
func (l *Lock) expiredErrLocked() error {
	if l.refreshErr == nil {
		return errExpired
	}
	return fmt.Errorf("%w (last refresh failed: %w)", errExpired, l.refreshErr)
}

// makeDoneLocked makes the done channel, closed at once when the lock has
// ended and otherwise armed to close at validUntil.
func (l *Lock) makeDoneLocked() {
	if l.done != nil {
		return
	}
	l.done = make(chan struct{})
	l.checkExpiryLocked()
	if l.ended {
		close(l.done)
		return
	}
	l.timer = time.AfterFunc(time.Until(l.validUntil), l.onTimer)
}

// onTimer runs at validUntil: it ends the lock unless a refresh moved
// validUntil on, in which case it waits for the new one.
func (l *Lock) onTimer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	if d := time.Until(l.validUntil); d > 0 {
		l.timer.Reset(d)
		return
	}
	l.loseLocked(l.expiredErrLocked())
}

// lose ends the lock because it is no longer held.
func (l *Lock) lose(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loseLocked(err)
}

func (l *Lock) loseLocked(err error) {
	if l.ended {
		return
	}
	l.err = err
	l.endLocked()
}

// endLocked marks the lock ended, closes done and stops the timer. The
// refresher notices by itself (it watches done).
func (l *Lock) endLocked() {
	if l.ended {
		return
	}
	l.ended = true
	if l.done != nil {
		close(l.done)
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.onLost != nil && l.err != nil {
		l.onLost(l.err)
	}
}

// stopRefresher stops the auto-refresh goroutine, if any, and waits for it
// until it returns or until stop is closed (nil: no wait at all). A
// refresher that is still in a Redis call when stop closes returns as soon
// as that call does (bounded by its ctx, which is cancelled here, as far as
// the client honours it, and otherwise by the client's timeouts); it
// touches nothing once the lock has ended.
func (l *Lock) stopRefresher(stop <-chan struct{}) {
	if l.stopRefresh == nil {
		return
	}
	l.stopRefresh()
	if stop == nil {
		return
	}
	select {
	case <-l.refresher:
	case <-stop:
	}
}

// refreshRetryDelay is the pause between auto-refresh retries after a
// transient error, as a fraction of the TTL, with a floor.
const (
	refreshRetryDivisor  = 10
	minRefreshRetryDelay = 10 * time.Millisecond
)

// refreshLoop is the auto-refresher: it refreshes every TTL/3 until stopped
// or until the lock ends. Transient errors are retried until ValidUntil.
func (l *Lock) refreshLoop(ctx context.Context) {
	defer close(l.refresher)
	l.keepAlive(ctx, l.ttl, func() time.Duration { return l.ttl })
}

// keepAlive refreshes the lock to ttl() every live/3 until ctx is done or
// the lock ends, so that a loss is noticed within live/3. An answer that the
// lock is not held is final (Refresh ends the lock); transient errors are
// retried every live/10, until the timer on ValidUntil ends the lock if no
// retry succeeds in time.
func (l *Lock) keepAlive(ctx context.Context, live time.Duration, ttl func() time.Duration) {
	done := l.Done()
	interval := live / 3
	retry := max(live/refreshRetryDivisor, minRefreshRetryDelay)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		rctx, cancel := context.WithDeadline(ctx, l.ValidUntil())
		err := l.Refresh(rctx, ttl())
		cancel()
		switch {
		case err == nil:
			t.Reset(interval)
		case errors.Is(err, ErrNotHeld):
			return
		default:
			t.Reset(min(retry, max(time.Until(l.ValidUntil()), 0)))
		}
	}
}

// guardReleaseTimeout bounds the Release that Do runs after fn.
const guardReleaseTimeout = 5 * time.Second

// guard runs fn under the lock (which must be auto-refreshed), cancels fn's
// ctx on loss, releases the lock after fn and combines the errors as Do
// documents.
func (l *Lock) guard(ctx context.Context, fn func(context.Context) error) error {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cancelOnLoss(l, cancel)

	release := func() error {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), guardReleaseTimeout)
		defer rcancel()
		return l.Release(rctx)
	}
	fnErr := callReleasing(func() error { return fn(fctx) }, func() { _ = release() })

	lost := l.Err()
	relErr := release()
	switch {
	case lost != nil:
		return joinErrors(fnErr, fmt.Errorf("lock %q lost while fn ran: %w", l.key, lost))
	case relErr != nil:
		return joinErrors(fnErr, relErr)
	}
	return fnErr
}

// callReleasing calls fn and returns its error; when fn panics, it runs
// release (so the lock is not kept, and refreshed, until the process ends)
// and lets the panic go on.
func callReleasing(fn func() error, release func()) error {
	panicked := true
	defer func() {
		if panicked {
			release()
		}
	}()
	err := fn()
	panicked = false
	return err
}
