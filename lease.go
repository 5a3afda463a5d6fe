package distlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The lease engine. Every primitive the library hands out (a lock, a tick
// claim, a Once hold; on a Locker or a Redlock) is a Lock: a token, a
// validity measured on the monotonic clock, refresh (by hand or by its own
// refresher goroutine), Done/Err and a loss context, release. Primitives
// differ only in their backend (one deployment or a quorum of nodes) and in
// the scripts that take, refresh and release them.

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
	b     backend
	key   string // as the caller gave it
	rkey  string // the Redis key
	token string // the stored value: the secret token and the owner label (owner.go)
	fence int64
	ttl   time.Duration
	drift float64
	repl  replication // WithReplicas: acknowledged refreshes
	// reused: the token is the caller's (WithToken), so the stored value
	// may repeat from one hold to the next; its release draws a fresh
	// nonce for the heir of a turn (release.lua).
	reused bool
	// ends holds the cancel functions of the contexts Context made, run
	// (with the lock's end as their cause) when the lock ends.
	ends map[*endHook]struct{}
	ob   *lockObs // its observer and what was reported (observer.go); nil: none

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
	l := &Lock{b: b, key: key, rkey: rkey, token: token, fence: fence, ttl: o.ttl, drift: o.drift, repl: o.repl, reused: o.token != "", validUntil: until, ob: newLockObs(o)}
	if o.autoRefresh {
		l.startRefresher(l.ttl, nil)
	}
	return l
}

// startRefresher starts the lock's refresher goroutine (its owner is the
// Lock: Release, or the lock's end, stops it, and Release waits for it). It
// refreshes the lock to ttl() every live/3 (ttl nil: the TTL the lock was
// obtained with); see keepAlive. It must be called at most once, before the
// Lock is shared.
func (l *Lock) startRefresher(live time.Duration, ttl func() time.Duration) {
	if ttl == nil {
		ttl = func() time.Duration { return l.ttl }
	}
	l.mu.Lock()
	l.makeDoneLocked()
	l.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	l.stopRefresh = cancel
	l.refresher = make(chan struct{})
	go func() {
		defer close(l.refresher)
		l.keepAlive(ctx, live, ttl)
	}()
}

// Key returns the lock's name as given to Obtain (without the key prefix);
// for a lock from ObtainMulti, the first of its keys as given (Keys has
// them all).
func (l *Lock) Key() string { return l.key }

// Token returns this holder's secret token: whoever has it can release,
// refresh or re-attach to the lock (WithToken).
func (l *Lock) Token() string { return tokenOf(l.token) }

// Fence returns the fencing token drawn when the lock was obtained with
// WithFencing: strictly greater than every fence handed out before for the
// key. It is 0 without WithFencing. For a lock from ObtainMulti it is the
// fence of Key, the first key (Fences has every key's).
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
			l.reportRefreshFailedLocked(err)
			l.mu.Unlock()
		}
		return fmt.Errorf("refresh %q: %w", l.key, err)
	}
	l.mu.Lock()
	l.refreshErr = nil
	if !l.ended {
		l.reportRefreshLocked(ttl - o.driftFor(ttl))
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
	l.beginRelease()
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
	l.reportReleaseLocked(err)
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
	// Observed before Done closes: whoever wakes on Done finds the loss
	// reported.
	l.reportLossLocked()
	if l.done != nil {
		close(l.done)
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	cause := l.err
	if cause == nil {
		cause = errReleased
	}
	for e := range l.ends {
		e.cancel(cause)
	}
	l.ends = nil
}

// endHook is one context made by Context.
type endHook struct{ cancel context.CancelCauseFunc }

// Context returns a copy of parent that is cancelled when the lock ends, so
// that the work the lock guards stops as soon as the lock can no longer be
// guaranteed: when it is lost, context.Cause returns the loss (the error
// Err returns, matching ErrNotHeld), and when it is released, an error
// matching ErrNotHeld too. Do, OncePerTick, Once and Lead run their fn
// under such a context. The context is also cancelled with parent, and by
// the returned cancel, which lets go of it: call it when the work is done.
// For a lock that has already ended the context is cancelled at once.
//
// Unlike Done, which closes at ValidUntil at the latest, the context ends
// at the same moment: on the local clock, the lock's validity, not its TTL
// in Redis.
func (l *Lock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	l.mu.Lock()
	l.makeDoneLocked() // arms the timer at ValidUntil
	if l.ended {
		cause := l.err
		if cause == nil {
			cause = errReleased
		}
		l.mu.Unlock()
		cancel(cause)
		return ctx, func() { cancel(nil) }
	}
	e := &endHook{cancel: cancel}
	if l.ends == nil {
		l.ends = make(map[*endHook]struct{})
	}
	l.ends[e] = struct{}{}
	l.mu.Unlock()
	return ctx, func() {
		l.mu.Lock()
		delete(l.ends, e)
		l.mu.Unlock()
		cancel(nil)
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

// guardReleaseTimeout bounds the Release (or Finish) that Do, Once,
// OncePerTick and Lead run after fn.
const guardReleaseTimeout = 5 * time.Second

// detached runs op with ctx's values but not its cancellation, bounded by
// guardReleaseTimeout: the end of a hold must happen even when the caller's
// ctx has ended.
func detached(ctx context.Context, op func(context.Context) error) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), guardReleaseTimeout)
	defer cancel()
	return op(dctx)
}

// guard runs fn under the lock (which must be auto-refreshed) with the
// lock's Context, releases the lock after fn and combines the errors as Do
// documents.
func (l *Lock) guard(ctx context.Context, fn func(context.Context) error) error {
	fctx, cancel := l.Context(ctx)
	defer cancel()
	release := func() error { return detached(ctx, l.Release) }
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
