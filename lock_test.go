package distlock_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// waitTimeout bounds every "must happen" wait in these tests. It is generous
// on purpose: the machines that run them are small and shared.
const waitTimeout = 10 * time.Second

// modes runs f once with pipelining on (the default) and once with it off,
// each against its own redis-server, so both command paths are tested.
func modes(t *testing.T, f func(t *testing.T, srv *redistest.Server, opts ...distlock.Option)) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			srv := redistest.Start(t)
			f(t, srv, distlock.WithPipelining(pipelining))
		})
	}
}

// waitClosed fails the test unless ch closes within d.
func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not closed within %v", what, d)
	}
}

func assertOpen(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: closed, want open", what)
	default:
	}
}

func TestMutualExclusionBetweenLockers(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		var obtainers []obtainFunc
		for i := 0; i < 3; i++ {
			lk := distlock.New(srv.Client(t), opts...) // a separate client: a stand-in for another process
			obtainers = append(obtainers, func(ctx context.Context) (*distlock.Lock, error) {
				ctx, cancel := context.WithTimeout(ctx, waitTimeout)
				defer cancel()
				return lk.Obtain(ctx, "counter", distlock.WithBlocking(), distlock.WithTTL(5*time.Second))
			})
		}
		hammer(t, srv.Client(t), obtainers, 4, 25)
	})
}

// obtainFunc takes one lock, blocking.
type obtainFunc func(ctx context.Context) (*distlock.Lock, error)

// hammer runs workers goroutines for each obtainer, each doing rounds
// critical sections: a non-atomic read-modify-write of a counter in Redis.
// It fails the test on any error, on two holders inside at once, and on a
// lost update, and returns the longest time a goroutine waited in Obtain.
func hammer(t *testing.T, counter *redis.Client, obtainers []obtainFunc, workers, rounds int) time.Duration {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, counter.Del(ctx, "count").Err())
	var wg sync.WaitGroup
	var inside, overlaps, longest atomic.Int64
	errs := make(chan error, len(obtainers)*workers)
	for _, obtain := range obtainers {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					start := time.Now()
					l, err := obtain(ctx)
					if err != nil {
						errs <- err
						return
					}
					if waited := int64(time.Since(start)); waited > longest.Load() {
						longest.Store(waited)
					}
					if inside.Add(1) != 1 {
						overlaps.Add(1)
					}
					// A lost update shows as a final count below the
					// number of critical sections.
					v, err := counter.Get(ctx, "count").Int()
					if err != nil && !errors.Is(err, redis.Nil) {
						errs <- err
					}
					if err := counter.Set(ctx, "count", v+1, 0).Err(); err != nil {
						errs <- err
					}
					inside.Add(-1)
					if err := l.Release(ctx); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Zero(t, overlaps.Load(), "holders overlapped")
	n, err := counter.Get(ctx, "count").Int()
	require.NoError(t, err)
	assert.Equal(t, len(obtainers)*workers*rounds, n, "lost updates")
	return time.Duration(longest.Load())
}

func TestObtainHeldReturnsNotObtained(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		a := distlock.New(srv.Client(t), opts...)
		b := distlock.New(srv.Client(t), opts...)
		l, err := a.Obtain(ctx, "job")
		require.NoError(t, err)
		_, err = b.Obtain(ctx, "job")
		require.ErrorIs(t, err, distlock.ErrNotObtained)
		// With a limited retry it still gives up, after the retries.
		start := time.Now()
		_, err = b.Obtain(ctx, "job", distlock.WithRetry(distlock.LimitRetry(distlock.LinearBackoff(20*time.Millisecond), 3)))
		require.ErrorIs(t, err, distlock.ErrNotObtained)
		assert.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond, "three retries of 20ms")
		require.NoError(t, l.Release(ctx))
		l2, err := b.Obtain(ctx, "job")
		require.NoError(t, err)
		require.NoError(t, l2.Release(ctx))
	})
}

func TestReleaseByNonHolderIsRefused(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t)
	lk := distlock.New(client)
	l, err := lk.Obtain(ctx, "pay:1")
	require.NoError(t, err)

	// A guessed token can neither take over nor re-attach.
	_, err = lk.Obtain(ctx, "pay:1", distlock.WithToken("guess"))
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	// A raw release with another token deletes nothing.
	n, err := client.Eval(ctx, `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
		[]string{"distlock:{pay:1}"}, "guess").Int()
	require.NoError(t, err)
	require.Zero(t, n)
	got, err := client.Get(ctx, "distlock:{pay:1}").Result()
	require.NoError(t, err)
	assert.Equal(t, distlock.StoredValue(l), got)
	require.NoError(t, l.Release(ctx))
}

func TestExpiryAndTakeover(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		a := distlock.New(srv.Client(t), opts...)
		b := distlock.New(srv.Client(t), opts...)
		old, err := a.Obtain(ctx, "k", distlock.WithTTL(150*time.Millisecond))
		require.NoError(t, err)
		// Done closes at ValidUntil since nothing refreshes the lock.
		waitClosed(t, old.Done(), waitTimeout, "Done of an expiring lock")
		require.ErrorIs(t, old.Err(), distlock.ErrNotHeld)
		assert.False(t, time.Now().Before(old.ValidUntil()), "Done closed before ValidUntil")

		octx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		cur, err := b.Obtain(octx, "k", distlock.WithBlocking(), distlock.WithTTL(10*time.Second))
		require.NoError(t, err)

		// The stale holder's Refresh and Release fail and leave the new
		// holder alone.
		require.ErrorIs(t, old.Refresh(ctx, time.Second), distlock.ErrNotHeld)
		require.ErrorIs(t, old.Release(ctx), distlock.ErrNotHeld)
		_, err = old.TTL(ctx)
		require.ErrorIs(t, err, distlock.ErrNotHeld)
		ttl, err := cur.TTL(ctx)
		require.NoError(t, err)
		assert.Greater(t, ttl, 9*time.Second)
		require.NoError(t, cur.Refresh(ctx, 0))
		assert.NoError(t, cur.Err())
		require.NoError(t, cur.Release(ctx))
		require.ErrorIs(t, cur.Release(ctx), distlock.ErrNotHeld, "second release")
		assert.NoError(t, cur.Err(), "Err after Release")
	})
}

func TestStaleHolderLearnsOfTakeover(t *testing.T) {
	// The key expires in Redis while the holder's local validity still runs
	// (here: the key is deleted behind its back, as a failover or a FLUSHALL
	// would); the next Refresh tells the holder, ends the Lock and does not
	// touch the new holder.
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t)
	a := distlock.New(client)
	old, err := a.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, client.Del(ctx, "distlock:{k}").Err())
	cur, err := distlock.New(srv.Client(t)).Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)

	require.ErrorIs(t, old.Refresh(ctx, 0), distlock.ErrNotHeld)
	waitClosed(t, old.Done(), time.Second, "Done after a refresh learned of the loss")
	require.ErrorIs(t, old.Err(), distlock.ErrNotHeld)
	require.ErrorIs(t, old.Release(ctx), distlock.ErrNotHeld)
	got, err := client.Get(ctx, "distlock:{k}").Result()
	require.NoError(t, err)
	assert.Equal(t, distlock.StoredValue(cur), got, "the new holder's lock is untouched")
	require.NoError(t, cur.Release(ctx))
}

func TestAutoRefreshKeepsShortLock(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		a := distlock.New(srv.Client(t), opts...)
		b := distlock.New(srv.Client(t), opts...)
		// Short, but with room for the scheduling pauses of a loaded
		// 2-core machine under -race: at 90ms (refresh every 30ms) a
		// pause of about 60ms lost the lock there now and then.
		const ttl = 150 * time.Millisecond
		l, err := a.Obtain(ctx, "k", distlock.WithTTL(ttl), distlock.WithAutoRefresh())
		require.NoError(t, err)
		deadline := time.Now().Add(12 * ttl)
		for time.Now().Before(deadline) {
			_, err := b.Obtain(ctx, "k", distlock.WithTTL(ttl))
			require.ErrorIs(t, err, distlock.ErrNotObtained, "taken while auto-refreshed")
			require.NoError(t, l.Err())
			time.Sleep(ttl / 3) // pacing of the probe, not synchronisation
		}
		assertOpen(t, l.Done(), "Done of an auto-refreshed lock")
		assert.True(t, l.ValidUntil().After(time.Now()))
		require.NoError(t, l.Release(ctx))
		waitClosed(t, l.Done(), time.Second, "Done after Release")
		require.NoError(t, l.Err())
		l2, err := b.Obtain(ctx, "k", distlock.WithTTL(ttl))
		require.NoError(t, err, "free after Release")
		require.NoError(t, l2.Release(ctx))
	})
}

func TestFlushAllClosesDoneAtNextRefresh(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		client := srv.Client(t)
		lk := distlock.New(client, opts...)
		const ttl = 3 * time.Second
		l, err := lk.Obtain(ctx, "k", distlock.WithTTL(ttl), distlock.WithAutoRefresh())
		require.NoError(t, err)
		require.NoError(t, client.FlushAll(ctx).Err())
		flushed := time.Now()
		// The next refresh is due within TTL/3; it must report the loss,
		// long before the validity would run out.
		waitClosed(t, l.Done(), waitTimeout, "Done after FLUSHALL")
		assert.Less(t, time.Since(flushed), ttl/3+time.Second)
		err = l.Err()
		require.ErrorIs(t, err, distlock.ErrNotHeld)
		assert.Contains(t, err.Error(), "deleted or taken over")
		require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)
	})
}

func TestFencesStrictlyIncrease(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		lockers := []*distlock.Locker{
			distlock.New(srv.Client(t), opts...),
			distlock.New(srv.Client(t), opts...),
		}
		var last int64
		for i := 0; i < 10; i++ {
			lk := lockers[i%2]
			octx, cancel := context.WithTimeout(ctx, waitTimeout)
			l, err := lk.Obtain(octx, "fenced", distlock.WithFencing(), distlock.WithTTL(60*time.Millisecond),
				distlock.WithRetry(distlock.LinearBackoff(5*time.Millisecond)))
			cancel()
			require.NoError(t, err)
			assert.Greater(t, l.Fence(), last, "fence of holder %d", i)
			last = l.Fence()
			if i%3 == 0 {
				// Let it expire instead of releasing it.
				waitClosed(t, l.Done(), waitTimeout, "expiry")
				continue
			}
			require.NoError(t, l.Release(ctx))
		}
		// Without fencing the fence is 0.
		l, err := lockers[0].Obtain(ctx, "unfenced")
		require.NoError(t, err)
		assert.Zero(t, l.Fence())
		require.NoError(t, l.Release(ctx))
	})
}

func TestNoScriptRecovery(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		client := srv.Client(t)
		lk := distlock.New(client, opts...)
		l, err := lk.Obtain(ctx, "k", distlock.WithFencing())
		require.NoError(t, err)
		require.NoError(t, client.ScriptFlush(ctx).Err())
		require.NoError(t, l.Refresh(ctx, 0), "refresh after SCRIPT FLUSH")
		require.NoError(t, client.ScriptFlush(ctx).Err())
		_, err = l.TTL(ctx)
		require.NoError(t, err, "TTL after SCRIPT FLUSH")
		require.NoError(t, client.ScriptFlush(ctx).Err())
		require.NoError(t, l.Release(ctx), "release after SCRIPT FLUSH")
		require.NoError(t, client.ScriptFlush(ctx).Err())
		l, err = lk.Obtain(ctx, "k", distlock.WithFencing())
		require.NoError(t, err, "fenced obtain after SCRIPT FLUSH")
		require.NoError(t, l.Release(ctx))
	})
}

func TestBlockingObtainWaitsForRelease(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		a := distlock.New(srv.Client(t), opts...)
		b := distlock.New(srv.Client(t), opts...)
		held, err := a.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		got := make(chan error, 1)
		go func() {
			octx, cancel := context.WithTimeout(ctx, waitTimeout)
			defer cancel()
			l, err := b.Obtain(octx, "k", distlock.WithBlocking())
			if err == nil {
				err = l.Release(ctx)
			}
			got <- err
		}()
		select {
		case err := <-got:
			t.Fatalf("obtained while held: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		require.NoError(t, held.Release(ctx))
		select {
		case err := <-got:
			require.NoError(t, err)
		case <-time.After(waitTimeout):
			t.Fatal("blocked Obtain did not return after Release")
		}
	})
}

func TestBlockingObtainCtxDeadline(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := distlock.New(srv.Client(t))
	held, err := a.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	defer held.Release(ctx)

	for _, opts := range [][]distlock.Option{
		{distlock.WithBlocking()},
		{distlock.WithRetry(distlock.LinearBackoff(10 * time.Millisecond))},
	} {
		octx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		start := time.Now()
		_, err = a.Obtain(octx, "k", opts...)
		cancel()
		require.Error(t, err)
		assert.ErrorIs(t, err, distlock.ErrNotObtained, "%v", opts)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "%v", opts)
		assert.Less(t, time.Since(start), 2*time.Second, "returned long after the deadline")
	}
	// A cancelled ctx is reported the same way, and takes no lock, even
	// a free one.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for _, opts := range [][]distlock.Option{{distlock.WithBlocking()}, nil, {distlock.WithFencing()}} {
		for _, key := range []string{"k", "free"} {
			_, err = a.Obtain(cctx, key, opts...)
			assert.ErrorIs(t, err, distlock.ErrNotObtained, "%q %v", key, opts)
			assert.ErrorIs(t, err, context.Canceled, "%q %v", key, opts)
		}
	}
	l, err := a.Obtain(ctx, "free")
	require.NoError(t, err, "a cancelled Obtain left the key taken")
	require.NoError(t, l.Release(ctx))
}

func TestDoRunsOnceAmongConcurrentCallers(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		var runs atomic.Int32
		release := make(chan struct{})
		started := make(chan struct{})
		var wg sync.WaitGroup
		results := make(chan error, 8)
		errJob := errors.New("job failed")
		for i := 0; i < 8; i++ {
			lk := distlock.New(srv.Client(t), opts...)
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- lk.Do(ctx, "tick", func(ctx context.Context) error {
					runs.Add(1)
					close(started)
					<-release
					return errJob
				})
			}()
		}
		waitClosed(t, started, waitTimeout, "one Do started")
		// The seven others give up at once (no retry by default).
		for i := 0; i < 7; i++ {
			select {
			case err := <-results:
				require.ErrorIs(t, err, distlock.ErrNotObtained)
			case <-time.After(waitTimeout):
				t.Fatal("a concurrent Do did not return")
			}
		}
		close(release)
		wg.Wait()
		require.ErrorIs(t, <-results, errJob, "Do returns fn's error")
		assert.EqualValues(t, 1, runs.Load())
		// The lock was released after fn.
		l, err := distlock.New(srv.Client(t), opts...).Obtain(ctx, "tick")
		require.NoError(t, err)
		require.NoError(t, l.Release(ctx))
	})
}

func TestDoCancelsFnWhenLockIsLost(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t)
	lk := distlock.New(client)
	err := lk.Do(ctx, "k", func(ctx context.Context) error {
		require.NoError(t, client.FlushAll(context.Background()).Err())
		select {
		case <-ctx.Done():
			assert.ErrorIs(t, context.Cause(ctx), distlock.ErrNotHeld)
			return ctx.Err()
		case <-time.After(waitTimeout):
			return errors.New("fn's ctx was not cancelled after the lock was lost")
		}
	}, distlock.WithTTL(300*time.Millisecond))
	require.ErrorIs(t, err, distlock.ErrNotHeld)
	require.ErrorIs(t, err, context.Canceled)

	// fn that returns nil on a lock lost unnoticed (no refresh yet) still
	// reports the loss, found by the Release.
	err = lk.Do(ctx, "k2", func(ctx context.Context) error {
		return client.FlushAll(context.Background()).Err()
	}, distlock.WithTTL(time.Minute))
	require.ErrorIs(t, err, distlock.ErrNotHeld)
}

func TestReattachWithToken(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))
	l, err := lk.Obtain(ctx, "k", distlock.WithToken("my-secret-token"), distlock.WithTTL(time.Second), distlock.WithFencing())
	require.NoError(t, err)
	assert.Equal(t, "my-secret-token", l.Token())
	// A restarted process re-attaches with the same token and a new TTL,
	// and draws a new, higher fence.
	again, err := distlock.New(srv.Client(t)).Obtain(ctx, "k", distlock.WithToken("my-secret-token"), distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)
	assert.Greater(t, again.Fence(), l.Fence())
	ttl, err := again.TTL(ctx)
	require.NoError(t, err)
	assert.Greater(t, ttl, 50*time.Second)
	require.NoError(t, again.Release(ctx))
}

func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
	lk := distlock.New(client)
	l, err := lk.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	srv.Kill(t)

	for _, opts := range [][]distlock.Option{nil, {distlock.WithFencing()}, {distlock.WithBlocking()}} {
		_, err = lk.Obtain(ctx, "other", opts...)
		require.Error(t, err)
		assert.NotErrorIs(t, err, distlock.ErrNotObtained, "a Redis error disguised as contention")
		assert.NotErrorIs(t, err, distlock.ErrInvalidArgument)
		assert.Contains(t, err.Error(), `obtain "other"`)
	}
	err = l.Refresh(ctx, 0)
	require.Error(t, err)
	assert.NotErrorIs(t, err, distlock.ErrNotHeld, "a transient error is not a loss")
	assert.NoError(t, l.Err(), "still valid until ValidUntil")
	_, err = l.TTL(ctx)
	require.Error(t, err)
	assert.NotErrorIs(t, err, distlock.ErrNotHeld)
	err = l.Release(ctx)
	require.Error(t, err)
	assert.NotErrorIs(t, err, distlock.ErrNotHeld)
	waitClosed(t, l.Done(), time.Second, "Done after Release, even a failed one")
}

// shortTimeouts makes a client give up on a paused server after 100ms.
func shortTimeouts(o *redis.Options) {
	o.ReadTimeout = 100 * time.Millisecond
	o.WriteTimeout = 100 * time.Millisecond
}

func TestAutoRefreshRidesOutShortOutage(t *testing.T) {
	// A pause shorter than the validity does not lose the lock: the
	// refresher retries transient errors until ValidUntil.
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t, shortTimeouts))
	l, err := lk.Obtain(ctx, "k", distlock.WithTTL(1500*time.Millisecond), distlock.WithAutoRefresh())
	require.NoError(t, err)
	srv.Pause(t)
	time.Sleep(700 * time.Millisecond) // the outage being simulated
	srv.Resume(t)
	assertOpen(t, l.Done(), "Done after a short outage")
	// Within a few refresh periods the validity is pushed on again.
	deadline := time.Now().Add(waitTimeout)
	for time.Until(l.ValidUntil()) < time.Second {
		require.NoError(t, l.Err())
		require.True(t, time.Now().Before(deadline), "validity never recovered")
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, l.Release(ctx))
}

func TestAutoRefreshLosesLockWhenOutageOutlastsValidity(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t, shortTimeouts))
	l, err := lk.Obtain(ctx, "k", distlock.WithTTL(400*time.Millisecond), distlock.WithAutoRefresh())
	require.NoError(t, err)
	srv.Pause(t)
	defer srv.Resume(t)
	waitClosed(t, l.Done(), waitTimeout, "Done during an outage")
	require.ErrorIs(t, l.Err(), distlock.ErrNotHeld)
	assert.False(t, time.Now().Before(l.ValidUntil()), "closed before ValidUntil")
	assert.Less(t, time.Since(l.ValidUntil()), 500*time.Millisecond, "closed long after ValidUntil")
}

func TestValidUntilRespectsDrift(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))
	const ttl = 10 * time.Second
	for _, factor := range []float64{0, 0.01, 0.1} {
		before := time.Now()
		l, err := lk.Obtain(ctx, "k", distlock.WithTTL(ttl), distlock.WithDriftFactor(factor))
		after := time.Now()
		require.NoError(t, err)
		drift := time.Duration(float64(ttl)*factor) + 2*time.Millisecond
		assert.False(t, l.ValidUntil().Before(before.Add(ttl-drift)), "factor %v", factor)
		assert.False(t, l.ValidUntil().After(after.Add(ttl-drift)), "factor %v", factor)
		require.NoError(t, l.Release(ctx))
	}
}

func TestBadInput(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))
	tests := []struct {
		name string
		key  string
		opts []distlock.Option
		want string
	}{
		{"empty key", "", nil, "empty key"},
		{"zero TTL", "k", []distlock.Option{distlock.WithTTL(0)}, "TTL must be positive"},
		{"negative TTL", "k", []distlock.Option{distlock.WithTTL(-time.Second)}, "TTL must be positive"},
		{"TTL below drift", "k", []distlock.Option{distlock.WithTTL(2 * time.Millisecond)}, "not above the clock drift"},
		{"NaN drift", "k", []distlock.Option{distlock.WithDriftFactor(math.NaN())}, "drift factor"},
		{"negative drift", "k", []distlock.Option{distlock.WithDriftFactor(-0.1)}, "drift factor"},
		{"infinite drift", "k", []distlock.Option{distlock.WithDriftFactor(math.Inf(1))}, "drift factor"},
		{"drift of one", "k", []distlock.Option{distlock.WithDriftFactor(1)}, "drift factor"},
		{"nil retry", "k", []distlock.Option{distlock.WithRetry(nil)}, "retry strategy"},
		{"zero node timeout", "k", []distlock.Option{distlock.WithNodeTimeout(0)}, "node timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, call := range []func() error{
				func() error { _, err := lk.Obtain(ctx, tt.key, tt.opts...); return err },
				func() error {
					return lk.Do(ctx, tt.key, func(context.Context) error { t.Error("fn ran"); return nil }, tt.opts...)
				},
			} {
				err := call()
				require.ErrorIs(t, err, distlock.ErrInvalidArgument)
				assert.NotErrorIs(t, err, distlock.ErrNotObtained)
				assert.Contains(t, err.Error(), tt.want)
			}
		})
	}
	// Defaults set on New are checked on each call.
	bad := distlock.New(srv.Client(t), distlock.WithTTL(-1))
	_, err := bad.Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrInvalidArgument)

	t.Run("nil client", func(t *testing.T) {
		for _, c := range []redis.UniversalClient{nil, (*redis.Client)(nil), (*redis.ClusterClient)(nil)} {
			lk := distlock.New(c)
			_, err := lk.Obtain(ctx, "k")
			require.ErrorIs(t, err, distlock.ErrInvalidArgument)
			assert.Contains(t, err.Error(), "nil Redis client")
			err = lk.Do(ctx, "k", func(context.Context) error { return nil })
			require.ErrorIs(t, err, distlock.ErrInvalidArgument)
		}
	})
	t.Run("refresh", func(t *testing.T) {
		l, err := lk.Obtain(ctx, "k")
		require.NoError(t, err)
		defer l.Release(ctx)
		require.ErrorIs(t, l.Refresh(ctx, -time.Second), distlock.ErrInvalidArgument)
		require.ErrorIs(t, l.Refresh(ctx, time.Millisecond), distlock.ErrInvalidArgument)
	})
	t.Run("nil option", func(t *testing.T) {
		l, err := lk.Obtain(ctx, "k", nil)
		require.NoError(t, err)
		require.NoError(t, l.Release(ctx))
	})
}

func TestKeysOfOneLockShareASlot(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t)
	for _, tt := range []struct{ prefix, key string }{
		{"distlock:", "plain"},
		{"distlock:", "}starts-with-close"},
		{"distlock:", "{}"},
		{"distlock:", "{user}:1"},
		{"distlock:", "a%7Bb"},
		{"", "\x00\xff binary \n"},
		{"x{}", "k"},
		{"x{", "k"},
		{"{app}:", "k"},
	} {
		lk := distlock.New(client, distlock.WithKeyPrefix(tt.prefix))
		l, err := lk.Obtain(ctx, tt.key, distlock.WithFencing())
		require.NoError(t, err, "%q %q", tt.prefix, tt.key)
		keys, err := client.Keys(ctx, "*").Result()
		require.NoError(t, err)
		require.Len(t, keys, 2, "lock and fence keys of %q %q: %q", tt.prefix, tt.key, keys)
		assert.Equal(t, distlock.KeySlot(keys[0]), distlock.KeySlot(keys[1]), "keys %q", keys)
		for _, k := range keys {
			assert.True(t, strings.HasPrefix(k, strings.NewReplacer("{", "%7B", "}", "%7D").Replace(tt.prefix)), "%q", k)
		}
		require.NoError(t, l.Release(ctx))
		require.NoError(t, client.FlushAll(ctx).Err())
	}
	// Distinct keys stay distinct after escaping.
	lk := distlock.New(client)
	a, err := lk.Obtain(ctx, "a{b")
	require.NoError(t, err)
	b, err := lk.Obtain(ctx, "a%7Bb")
	require.NoError(t, err, "escaping made two keys collide")
	require.NoError(t, a.Release(ctx))
	require.NoError(t, b.Release(ctx))
}

func TestRefreshToAShorterTTLMovesDone(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	l, err := distlock.New(srv.Client(t)).Obtain(ctx, "k", distlock.WithTTL(3*time.Second))
	require.NoError(t, err)
	done := l.Done() // arms the timer for the 3s validity
	require.NoError(t, l.Refresh(ctx, 200*time.Millisecond))
	waitClosed(t, done, time.Second, "Done after a refresh to 200ms")
	assert.False(t, time.Now().Before(l.ValidUntil()), "Done closed before ValidUntil")
	assert.Less(t, time.Since(l.ValidUntil()), 100*time.Millisecond, "Done closed long after ValidUntil")
	require.ErrorIs(t, l.Err(), distlock.ErrNotHeld)
}

func TestDoReleasesWhenFnPanics(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))
	func() {
		defer func() {
			assert.Equal(t, "boom", recover(), "the panic goes on to the caller")
		}()
		_ = lk.Do(ctx, "k", func(context.Context) error { panic("boom") })
	}()
	l, err := lk.Obtain(ctx, "k")
	require.NoError(t, err, "the lock was kept after fn panicked")
	require.NoError(t, l.Release(ctx))
}

func TestZeroAndNilLockerDoNotPanic(t *testing.T) {
	ctx := context.Background()
	for _, lk := range []*distlock.Locker{nil, {}} {
		_, err := lk.Obtain(ctx, "k")
		require.ErrorIs(t, err, distlock.ErrInvalidArgument)
		require.ErrorIs(t, lk.Do(ctx, "k", func(context.Context) error { return nil }), distlock.ErrInvalidArgument)
		_, err = lk.Status(ctx, "k")
		require.ErrorIs(t, err, distlock.ErrInvalidArgument)
		_, err = lk.OncePerTick(ctx, "k", time.Minute, func(context.Context, time.Time) error { return nil })
		require.ErrorIs(t, err, distlock.ErrInvalidArgument)
		require.ErrorIs(t, lk.Lead(ctx, "k", func(context.Context) error { return nil }), distlock.ErrInvalidArgument)
	}
}
