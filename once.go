package distlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Once: the work for a key at most once per window.
//
// A lock held only while the work runs cannot tell a caller that comes
// after the run that the work was done: a payment submitted twice, 0.7s
// apart, is charged twice. Once keeps that memory in the lock's own key.
// While fn runs the key holds the runner's token, like any lock (the other
// callers get ErrNotObtained, or wait); when fn succeeds, one script swaps
// the token for a done marker that expires after the window and publishes
// on the key's wake channel, so blocked callers learn the outcome at once
// and get ErrAlreadyDone; when fn fails the key is released (publishing
// too), so that the next caller runs fn again.

// onceDonePrefix starts every done marker: a NUL byte that no random token
// (a UUID) holds, then the runner's token, so that a retried finish can
// tell its own marker.
const onceDonePrefix = "\x00done:"

// Answers of once_acquire.lua.
const (
	onceHeld     = 0
	onceObtained = 1
	onceDone     = 2
)

// onceFinishAttempts bounds the attempts at recording a success when Redis
// errors (the script is idempotent, so a lost reply is safe to retry).
const onceFinishAttempts = 3

// Once runs fn at most once per window for key, across every process that
// calls Once with the same key (and key prefix): to deduplicate submits
// (window: the deduplication period) or to rebuild a cache entry once while
// other callers wait (window: the entry's lifetime).
//
//   - While fn runs the key is held as by Do: it is auto-refreshed (TTL from
//     WithTTL, default DefaultTTL), and fn's ctx is cancelled as soon as the
//     hold is lost (context.Cause then matches ErrNotHeld). Another caller
//     gets an error matching ErrNotObtained (the work is in progress), or,
//     with WithBlocking, waits for the outcome: it is woken, without
//     polling, the moment the runner finishes.
//   - When fn returns nil the key is kept as done for window, counted from
//     the moment fn succeeded (not from the call), and Once returns nil.
//     Until the window ends every caller, including those that were waiting,
//     gets an error matching ErrAlreadyDone without running fn.
//   - When fn fails (returns an error or panics) the key is freed at once,
//     so that a retry (or a waiter) runs fn again, and Once returns fn's
//     error; a panic goes on after the key is freed.
//   - When the hold is lost while fn runs, nothing is marked done (another
//     caller may already be running fn) and Once returns fn's error joined
//     with an error matching ErrNotHeld.
//   - When fn succeeded but the success cannot be recorded (the hold was
//     lost just before, or Redis failed every attempt to record it) Once
//     returns an error saying so, matching ErrNotHeld in the first case: fn
//     ran, but may run again (in the second case once the hold's TTL ends).
//
// Bad input (an empty key, window < 1ms, a nil fn, a bad option, and
// WithToken, WithFencing or WithReplicas, which Once cannot honour: it draws
// a fresh token per attempt, fn gets no Lock to read a fence from, and its
// done marker is not acknowledged by replicas) returns an error
// matching ErrInvalidArgument. A Redis error is returned wrapped.
//
// "At most once" holds as long as the Redis deployment keeps the key (see
// Locker) and the runner finishes within its hold; fn must still be safe to
// run again after an error, as the next caller will run it. A plain Obtain
// of the same key finds it taken while it is running or done.
func (lk *Locker) Once(ctx context.Context, key string, window time.Duration, fn func(ctx context.Context) error, opts ...Option) error {
	if err := lk.check(); err != nil {
		return fmt.Errorf("once %q: %w", key, err)
	}
	o, err := onceOptions(lk.opts, key, window, fn, opts)
	if err != nil {
		return fmt.Errorf("once %q: %w", key, err)
	}
	rk := lockKey(o.prefix, key)
	co := newObtainObs(o, key, false)
	try := func(ctx context.Context) (*Lock, time.Duration, error) {
		// A fresh token per attempt: a failed attempt's clean-up, however
		// late it lands, cannot delete a hold a later attempt took.
		co.attempt()
		token := attemptToken(o)
		start := time.Now()
		run := lk.conns.get()
		res, err := onceAcquireScript.Run(ctx, run, []string{rk}, token, o.ttl.Milliseconds(), onceDonePrefix).Int64Slice()
		lk.conns.done()
		switch {
		case err != nil:
			lk.abandon(ctx, err, rk, token)
			return nil, 0, err
		case len(res) != 2:
			return nil, 0, fmt.Errorf("distlock: unexpected once reply %v", res)
		case res[0] == onceDone:
			return nil, 0, ErrAlreadyDone
		case res[0] == onceHeld:
			co.contended()
			return nil, msTTL(res[1]), nil
		}
		l := newLock(lk, key, rk, token, 0, o, start)
		if l == nil {
			lk.abandon(ctx, nil, rk, token) // obtained too late to be of use
		}
		return l, 0, nil
	}
	l, err := co.done(obtain(ctx, try, obtainCall{op: "once", key: key, rk: rk, o: o, w: lk.waiters}))
	if err != nil {
		return onceObtainErr(key, err)
	}
	return l.runOnce(ctx, fn, func(ctx context.Context) error {
		run := lk.conns.get()
		defer lk.conns.done()
		n, err := onceFinishScript.Run(ctx, run, []string{rk}, l.token, onceDonePrefix+l.token, window.Milliseconds(), lk.waiters.publish).Int64()
		switch {
		case err != nil:
			return err
		case n == 0:
			return errGone
		}
		return nil
	})
}

// Once runs fn at most once per window for key, exactly as Locker.Once
// does, with the key held, and then marked done, on a quorum of the nodes.
//
// What the done marker guarantees: once Once has returned nil, the marker is
// on a quorum of the nodes, and a caller that finds it on any node gets
// ErrAlreadyDone. Any later run needs a quorum of nodes free of the key,
// which overlaps the quorum that recorded the marker, so fn does not run
// again within the window unless a node of that quorum lost the marker (it
// restarted without its data, see Redlock) or expired it early (its clock
// ran fast). When the success reached fewer than a quorum of the nodes, Once
// says so in its error (a *QuorumError): fn may run again.
func (r *Redlock) Once(ctx context.Context, key string, window time.Duration, fn func(ctx context.Context) error, opts ...Option) error {
	if err := r.check(); err != nil {
		return fmt.Errorf("once %q: %w", key, err)
	}
	o, err := onceOptions(r.opts, key, window, fn, opts)
	if err != nil {
		return fmt.Errorf("once %q: %w", key, err)
	}
	o.retry = jitteredRetry{o.retry}
	rk := lockKey(o.prefix, key)
	b := &redlockBackend{r: r, nodeTimeout: min(o.nodeTimeout, o.ttl/10), obs: newObtainObs(o, key, true)}
	var last *QuorumError
	try := func(ctx context.Context) (*Lock, time.Duration, error) {
		// A fresh token per attempt, as on a Locker.
		b.obs.attempt()
		l, holderTTL, done, qe, fatal := b.onceAttempt(ctx, key, rk, attemptToken(o), o)
		last = qe
		switch {
		case done:
			return nil, 0, ErrAlreadyDone
		case fatal:
			return nil, 0, qe
		}
		return l, holderTTL, nil
	}
	l, err := obtain(ctx, try, obtainCall{op: "once", key: key, rk: rk, o: o, w: r.waiters})
	if err != nil && last != nil && errors.Is(err, ErrNotObtained) {
		err = fmt.Errorf("%w (last attempt: %w)", err, last)
	}
	if l, err = b.obs.done(l, err); err != nil {
		return onceObtainErr(key, err)
	}
	return l.runOnce(ctx, fn, func(ctx context.Context) error {
		op := nodeOp{script: onceFinishScript, keys: []string{rk},
			args: []any{l.token, onceDonePrefix + l.token, window.Milliseconds(), r.waiters.publish}}
		res := r.fanOut(ctx, b.nodeTimeout, untilQuorum, nil, &op, countHeld)
		return r.holdOutcome("once", res, 0)
	})
}

// onceAttempt makes one Redlock attempt at Once's hold. done reports that a
// node holds the done marker; then, as on every failure, the attempt has
// released the key on every node that may hold it for token.
func (b *redlockBackend) onceAttempt(ctx context.Context, key, rk, token string, o options) (l *Lock, holderTTL time.Duration, done bool, qe *QuorumError, fatal bool) {
	r := b.r
	start := time.Now()
	op := nodeOp{script: onceAcquireScript, keys: []string{rk},
		args: []any{token, o.ttl.Milliseconds(), onceDonePrefix}}
	var holders []time.Duration
	nDone := 0
	res := r.fanOut(ctx, b.nodeTimeout, untilQuorum, nil, &op, func(_ int, cmd *redis.Cmd) (verdict, error) {
		v, err := cmd.Int64Slice()
		switch {
		case err != nil:
			return vFailed, err
		case len(v) != 2:
			return vFailed, fmt.Errorf("distlock: unexpected once reply %v", v)
		case v[0] == onceObtained:
			return vOK, nil
		case v[0] == onceDone:
			nDone++
		default:
			holders = append(holders, msTTL(v[1]))
		}
		return vRefused, nil
	})
	if nDone == 0 && res.ok >= r.quorum {
		b.setMayHold(res.verdicts)
		if l = newLock(b, key, rk, token, 0, o, start); l != nil {
			b.observeAttempt(res, false)
			return l, 0, false, nil, false
		}
	}
	b.abandon(ctx, rk, token, res.verdicts)
	if nDone > 0 {
		b.observeAttempt(res, true) // done, not held
		return nil, 0, true, nil, false
	}
	qe, fatal = r.obtainOutcome(res)
	b.observeAttempt(res, fatal)
	return nil, r.holderTTL(res, holders), false, qe, fatal
}

// onceOptions resolves and checks the options of a Once call.
func onceOptions(defaults options, key string, window time.Duration, fn func(context.Context) error, opts []Option) (options, error) {
	switch {
	case fn == nil:
		return options{}, invalidf("nil fn")
	case window < time.Millisecond:
		return options{}, invalidf("window must be at least 1ms, got %v", window)
	}
	if err := rejectOptions("Once", opts, func(opt Option) bool {
		switch v := opt.(type) {
		case tokenOption:
			return v != ""
		case fencingOption:
			return bool(v)
		case replicasOption:
			return v != replicasOption{}
		case sharedOption, limitOption:
			return true
		}
		return false
	}); err != nil {
		return options{}, err
	}
	// A token, fencing or replica acknowledgement set as a default of New
	// does not apply to Once (left out before the options are checked).
	defaults.token, defaults.fencing, defaults.repl = "", false, replication{}
	o, err := callOptions(defaults, key, opts)
	if err != nil {
		return o, err
	}
	o.autoRefresh = true
	return o, nil
}

// onceObtainErr is the error of a Once whose hold was not obtained.
func onceObtainErr(key string, err error) error {
	if errors.Is(err, ErrAlreadyDone) {
		return fmt.Errorf("once %q: %w", key, ErrAlreadyDone)
	}
	return err
}

// runOnce runs fn under l (which must be auto-refreshed) as Once documents:
// on success it records the work as done with finish, which must replace
// l's token by a done marker (compare-by-token) and answer an error
// matching ErrNotHeld when the token no longer holds the key; otherwise it
// releases l.
func (l *Lock) runOnce(ctx context.Context, fn func(context.Context) error, finish func(context.Context) error) error {
	fctx, cancel := l.Context(ctx)
	defer cancel()
	release := func() error { return detached(ctx, l.Release) }
	fnErr := callReleasing(func() error { return fn(fctx) }, func() { _ = release() })

	if lost := l.Err(); lost != nil {
		_ = release() // stops the refresher; the key is no longer ours
		return joinErrors(fnErr, fmt.Errorf("once %q: lock lost while fn ran: %w", l.key, lost))
	}
	if fnErr != nil {
		if err := release(); err != nil {
			return joinErrors(fnErr, err)
		}
		return fnErr
	}
	if err := detached(ctx, func(ctx context.Context) error { return l.endWith(ctx, finish) }); err != nil {
		if errors.Is(err, ErrNotHeld) {
			return fmt.Errorf("once %q: fn succeeded but the lock was lost before it was marked done: %w", l.key, err)
		}
		return fmt.Errorf("once %q: fn succeeded but marking it done failed (it may run again once the lock expires): %w", l.key, err)
	}
	return nil
}

// endWith ends l with op in place of a release: it stops the refresher,
// runs op (retried on Redis errors: op must be idempotent) and ends the Lock
// as Release does. op answers like a backend's release.
func (l *Lock) endWith(ctx context.Context, op func(context.Context) error) error {
	l.stopRefresher(ctx.Done())
	if err := l.heldErr(); err != nil {
		return err
	}
	var err error
	for range onceFinishAttempts {
		if err = op(ctx); err == nil || errors.Is(err, ErrNotHeld) || ctx.Err() != nil {
			break
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.released = true
	if err != nil && errors.Is(err, ErrNotHeld) && l.err == nil && !l.ended {
		l.err = err
	}
	l.endLocked()
	l.reportReleaseLocked(err)
	return err
}
