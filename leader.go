package distlock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Leadership: one active replica.

// Lead makes this replica a candidate for the leadership named key and runs
// fn while it is the leader. It waits until it obtains the lock key (woken
// on release as a blocking Obtain is; WithRetry sets the fallback re-check
// interval), then runs fn with a ctx that is cancelled the moment the
// leadership is lost (context.Cause then matches ErrNotHeld). The lock is auto-refreshed
// every TTL/3 (WithTTL, default DefaultTTL), so a loss is noticed within
// TTL/3 and a leader that dies is replaced after at most TTL.
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
// backoff. Options are those of Obtain; WithBlocking and WithAutoRefresh are
// always on. With WithFencing every term of leadership has a higher fence
// than the terms before.
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
	all := make([]Option, 0, len(opts)+2)
	all = append(append(all, opts...), WithBlocking(), WithAutoRefresh())
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

		fctx, cancel := context.WithCancelCause(ctx)
		watch(l, cancel)
		release := func() error {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), guardReleaseTimeout)
			defer rcancel()
			return l.Release(rctx)
		}
		fnErr := callReleasing(func() error { return fn(fctx) }, func() { cancel(nil); _ = release() })
		cancel(nil)

		lost := l.Err()
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

// leadEnded is Lead's error when ctx ended while campaigning.
func leadEnded(ctx context.Context, key string, lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("lead %q: %w", key, errors.Join(ctx.Err(), fmt.Errorf("last error: %w", lastErr)))
	}
	return ctx.Err()
}
