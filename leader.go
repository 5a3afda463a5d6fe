package distlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Leadership: one active replica.

// DefaultLeadTTL is the TTL of a leadership when neither Lead nor New is
// given a TTL: a leader that dies without resigning (a crash, kill -9, a
// lost machine) is replaced at most this long after its last refresh. It
// is shorter than DefaultTTL because a leadership is refreshed for as long
// as it lasts, so a short TTL costs only refreshes (one every TTL/3).
const DefaultLeadTTL = 10 * time.Second

// stopMarginOption is WithStopMargin: an option of Lead only, read by lead
// itself, so applying it to the common options does nothing.
type stopMarginOption time.Duration

func (stopMarginOption) apply(*options) {}
func (m stopMarginOption) String() string {
	return fmt.Sprintf("WithStopMargin(%v)", time.Duration(m))
}

// WithStopMargin sets how long before the leadership could expire Lead
// cancels fn's ctx when refreshes have been failing: fn's ctx is cancelled
// at ValidUntil − margin unless a refresh moved ValidUntil on before then,
// so fn has the margin, plus the drift allowance, to stop before another
// replica can become leader. Default TTL/5; 0 cancels at ValidUntil. A
// margin that is negative or above TTL/2 makes Lead fail with
// ErrInvalidArgument. It applies to Lead only: given to New, Obtain or Do
// it has no effect.
func WithStopMargin(margin time.Duration) Option { return stopMarginOption(margin) }

// leaderLockKey is the ctx key of the Lock of a term of leadership.
type leaderLockKey struct{}

// LeaderLock returns the Lock of the leadership whose fn was given ctx (or
// a ctx derived from it), and nil for any other ctx. With WithFencing its
// Fence is higher than that of every earlier term: pass it to the resource
// the leader writes, and have the resource reject an older fence, so that
// a deposed leader that has not noticed yet cannot do harm (see Lead).
func LeaderLock(ctx context.Context) *Lock {
	l, _ := ctx.Value(leaderLockKey{}).(*Lock)
	return l
}

// Lead makes this replica a candidate for the leadership named key and runs
// fn while it is the leader. It waits until it obtains the lock key (woken
// on release as a blocking Obtain is; WithRetry sets the fallback re-check
// interval), then runs fn with a ctx that is cancelled when the leadership
// ends (context.Cause then matches ErrNotHeld). LeaderLock(ctx) returns the
// leadership's Lock.
//
// How soon fn learns, and how soon another replica can lead: the lock is
// refreshed every TTL/3 (WithTTL, default DefaultLeadTTL, 10s).
//   - If this replica cannot reach Redis, refreshes fail and fn's ctx is
//     cancelled WithStopMargin (default TTL/5) before ValidUntil; another
//     replica can lead only after the key expires, which is after
//     ValidUntil + the drift allowance (TTL×drift factor + 2ms). fn has
//     that long to stop.
//   - If Redis loses the key (a restart without persistence, a failover,
//     FLUSHALL, an expiry after this process paused longer than the TTL),
//     another replica can lead at once, while this one learns at its next
//     refresh, up to TTL/3 later: two leaders can overlap that long. Only
//     fencing (WithFencing, LeaderLock(ctx).Fence() checked by the
//     resource) makes that overlap harmless.
//   - A leader that dies without resigning is replaced once its key
//     expires: at most TTL after its last refresh.
//
// After a loss Lead campaigns again (fn's error is then dropped), until ctx
// is done. Lead returns:
//   - when fn returns while this replica is still the leader: the leadership
//     is released at once (another candidate takes over) and Lead returns
//     fn's error, which may be nil (return from fn to resign);
//   - when ctx is done: ctx's error (or fn's error if fn returned one),
//     after releasing the leadership if held; when Redis errors kept it
//     from leading, the last one is joined to ctx's error;
//   - at once on bad input (an empty key, a nil fn, a bad option), with an
//     error matching ErrInvalidArgument.
//
// Redis errors while campaigning are retried with a capped exponential
// backoff. Options are those of Obtain, and WithStopMargin; WithBlocking
// and WithAutoRefresh are always on. The TTL is DefaultLeadTTL unless
// WithTTL is given to Lead, or a TTL other than DefaultTTL to New. With
// WithFencing every term of leadership has a higher fence than the terms
// before.
func (lk *Locker) Lead(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...Option) error {
	return lead(ctx, lk, key, fn, opts)
}

// Lead campaigns for the leadership named key on a quorum of the nodes and
// runs fn while leader, exactly as Locker.Lead does on one Redis.
func (r *Redlock) Lead(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...Option) error {
	return lead(ctx, r, key, fn, opts)
}

// Backoff of a candidate after a Redis error.
var leadErrorBackoff = ExponentialBackoff(10*time.Millisecond, time.Second)

func lead(ctx context.Context, ob obtainer, key string, fn func(context.Context) error, opts []Option) error {
	if fn == nil {
		return fmt.Errorf("lead %q: %w", key, invalidf("nil fn"))
	}
	if err := rejectShared("Lead", opts); err != nil {
		return fmt.Errorf("lead %q: %w", key, err)
	}
	all := make([]Option, 0, len(opts)+3)
	if ob.defaults().ttl == DefaultTTL {
		all = append(all, WithTTL(DefaultLeadTTL)) // opts may override it
	}
	all = append(append(all, opts...), WithBlocking(), WithAutoRefresh())
	o := ob.defaults().with(all)
	margin := o.ttl / 5
	for _, opt := range opts {
		if m, ok := opt.(stopMarginOption); ok {
			margin = time.Duration(m)
		}
	}
	if margin < 0 || margin > o.ttl/2 {
		return fmt.Errorf("lead %q: %w", key, invalidf("stop margin %v must be in [0, TTL/2 = %v]", margin, o.ttl/2))
	}
	var lastErr error
	failures := 0
	for {
		if ctx.Err() != nil {
			return leadEnded(ctx, key, lastErr)
		}
		l, err := ob.Obtain(ctx, key, all...)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return leadEnded(ctx, key, lastErr)
			case errors.Is(err, ErrInvalidArgument):
				return fmt.Errorf("lead %q: %w", key, err)
			}
			lastErr = err
			failures++
			d, _ := leadErrorBackoff.NextBackoff(failures)
			if sleep(ctx, d) != nil {
				return leadEnded(ctx, key, lastErr)
			}
			continue
		}
		failures, lastErr = 0, nil

		lctx, lcancel := l.Context(ctx)
		fctx, cancel := context.WithCancelCause(context.WithValue(lctx, leaderLockKey{}, l))
		disarm := stopBeforeExpiry(l, margin, cancel)
		release := func() error { return detached(ctx, l.Release) }
		fnErr := callReleasing(func() error { return fn(fctx) }, func() { disarm(); cancel(nil); lcancel(); _ = release() })
		stopped := disarm()
		cancel(nil)
		lcancel()

		lost := l.Err()
		if lost == nil && stopped != nil {
			lost = stopped
		}
		relErr := release()
		if lost == nil && errors.Is(relErr, ErrNotHeld) {
			lost = relErr // lost before a refresh could tell
		}
		switch {
		case lost != nil && ctx.Err() == nil:
			continue // campaign again
		case fnErr != nil:
			return fnErr
		case ctx.Err() != nil:
			return ctx.Err()
		case relErr != nil && !errors.Is(relErr, ErrNotHeld):
			// Resigned, but Redis did not hear it: the lock stays until
			// its TTL, which delays the next leader.
			return relErr
		}
		return nil
	}
}

// stopBeforeExpiry cancels fn's ctx, with a cause matching ErrNotHeld,
// margin before l's ValidUntil, unless refreshes keep moving ValidUntil on.
// It returns disarm, which stops it (it fires no more once disarm has
// returned) and returns the cause it cancelled with, nil if it did not
// fire. A margin of 0 leaves the cancellation to the Lock (at ValidUntil).
func stopBeforeExpiry(l *Lock, margin time.Duration, cancel context.CancelCauseFunc) (disarm func() error) {
	if margin <= 0 {
		return func() error { return nil }
	}
	var mu sync.Mutex
	var t *time.Timer
	var cause error
	disarmed := false
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if disarmed || cause != nil {
			return
		}
		if d := time.Until(l.ValidUntil().Add(-margin)); d > 0 {
			t.Reset(d) // a refresh moved ValidUntil on
			return
		}
		if l.Err() != nil {
			return // lost: the Lock has cancelled fn's ctx
		}
		cause = fmt.Errorf("lead %q: %w: refreshes failed; stopped %v before the leadership could expire", l.Key(), ErrNotHeld, margin)
		cancel(cause)
	}
	mu.Lock()
	t = time.AfterFunc(time.Until(l.ValidUntil().Add(-margin)), check)
	mu.Unlock()
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		disarmed = true
		t.Stop()
		return cause
	}
}

// leadEnded is Lead's error when ctx ended while campaigning.
func leadEnded(ctx context.Context, key string, lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("lead %q: %w", key, joinErrors(ctx.Err(), fmt.Errorf("last error: %w", lastErr)))
	}
	return ctx.Err()
}
