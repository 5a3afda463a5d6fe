package distlock_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// TestOnceSpentAttemptCleanupSparesLaterAttempt: a failed attempt's
// clean-up must never delete the hold a later attempt of the same Once
// took.
//
//  1. X's attempt 1 (once_acquire) is held back past the hold's TTL: when it
//     lands it takes the key, but its validity is already spent, so X gives
//     the key back; that release is held back on its connection.
//  2. The key expires; X's next attempt takes it and runs fn.
//  3. Inside fn, the held release lands.
//  4. Y's Once must find the key held (ErrNotObtained) and not run.
//
// Before the fix every attempt of one Once used the same token, so the late
// release deleted attempt 2's hold and Y ran fn beside X.
func TestOnceSpentAttemptCleanupSparesLaterAttempt(t *testing.T) {
	acquire, release := scriptSrc(t, "once_acquire"), scriptSrc(t, "release")
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		const key = "once-spent"
		const ttl = 1200 * time.Millisecond
		f := redistest.NewFaults(t)
		x := distlock.New(srv.Client(t, f.Options, func(o *redis.Options) {
			o.ReadTimeout = 3 * time.Second
			o.ContextTimeoutEnabled = true
		}), opts...)
		y := distlock.New(srv.Client(t), opts...)
		srv.Exec(t, "SCRIPT", "LOAD", release) // as after any earlier release

		f.Delay(redistest.And(redistest.Script(acquire), redistest.HasArg(rlKey(key))), ttl+100*time.Millisecond)
		held := f.Hold(redistest.And(redistest.Script(release), redistest.HasArg(rlKey(key))))
		retry := newSteppedRetry(10)
		var yRan atomic.Bool
		yErr := make(chan error, 1)
		res := make(chan error, 1)
		go func() { // owner: the test, which receives from res
			res <- x.Once(ctx, key, time.Minute, func(context.Context) error {
				assert.NoError(t, held.Release(5*time.Second), "the held release lands")
				yErr <- y.Once(ctx, key, time.Minute, func(context.Context) error {
					yRan.Store(true)
					return nil
				})
				return nil
			}, distlock.WithTTL(ttl), distlock.WithRetry(retry))
		}()
		require.Equal(t, 1, <-retry.failed)
		waitClosed(t, held.Caught(), waitTimeout, "attempt 1's clean-up")
		// Let the key of attempt 1 expire, then let X try again.
		for srv.Exec(t, "EXISTS", rlKey(key)) != int64(0) {
			require.NoError(t, ctx.Err(), "attempt 1's key never expired")
			time.Sleep(ttl / 20)
		}
		retry.next <- struct{}{}
		require.NoError(t, <-res)
		err := <-yErr
		require.False(t, yRan.Load(), "Y ran fn while X's fn ran (Y: %v)", err)
		require.True(t, errors.Is(err, distlock.ErrNotObtained), "Y: %v", err)
	})
}

// TestOnceErrorsNameOnce: a Once that does not get its hold names itself,
// not Obtain, whether it gave up at once or its ctx ended while it waited
// (before, both said `obtain "k": …`).
func TestOnceErrorsNameOnce(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t))
	ctx := context.Background()
	held := make(chan struct{})
	finish := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- lk.Once(ctx, "named", time.Minute, func(context.Context) error {
			close(held)
			<-finish
			return nil
		})
	}()
	waitClosed(t, held, waitTimeout, "first Once running")
	noop := func(context.Context) error { return nil }

	err := lk.Once(ctx, "named", time.Minute, noop)
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	assert.Equal(t, `once "named": distlock: not obtained`, err.Error())

	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = lk.Once(wctx, "named", time.Minute, noop, distlock.WithBlocking())
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, `once "named": distlock: not obtained: context deadline exceeded`, err.Error())

	close(finish)
	require.NoError(t, <-errc)
}
