package distlock

// Once-per-tick tests. They live in the package itself so that each
// simulated replica can have its own clock (the unexported now parameter of
// oncePerTick and claimTick); the locks go to a real redis-server.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock/internal/redistest"
)

// jobWaitTimeout bounds every "must happen" wait in these tests.
const jobWaitTimeout = 10 * time.Second

// tickBase is a boundary of every period the tests use: the simulated
// replicas' clocks are set around it.
var tickBase = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// clock returns a replica clock that reads at + the real time elapsed since
// the call: a clock set to at, that runs.
func clock(at time.Time) func() time.Time {
	start := time.Now()
	return func() time.Time { return at.Add(time.Since(start)) }
}

// runLog records which replica ran fn for which tick.
type runLog struct {
	mu   sync.Mutex
	runs map[int64][]string // by tick, in Unix nanoseconds
}

func (r *runLog) fn(replica string) func(context.Context, time.Time) error {
	return func(_ context.Context, tick time.Time) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.runs == nil {
			r.runs = map[int64][]string{}
		}
		r.runs[tick.UnixNano()] = append(r.runs[tick.UnixNano()], replica)
		return nil
	}
}

func (r *runLog) get(tick time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.runs[tick.UnixNano()]...)
}

func TestTickOfRoundsToNearestBoundary(t *testing.T) {
	const p = time.Second
	tests := []struct {
		give time.Duration // offset from tickBase
		want time.Duration // offset of the tick from tickBase
	}{
		{0, 0},
		{40 * time.Millisecond, 0},
		{-40 * time.Millisecond, 0}, // Truncate would say -1s: the previous tick
		{499 * time.Millisecond, 0},
		{-499 * time.Millisecond, 0},
		{500 * time.Millisecond, p}, // halfway counts for the later one
		{-501 * time.Millisecond, -p},
		{1400 * time.Millisecond, p},
	}
	for _, tt := range tests {
		got := TickOf(tickBase.Add(tt.give), p)
		assert.Equal(t, tickBase.Add(tt.want), got, "TickOf(base%+v)", tt.give)
	}
	assert.Equal(t, tickBase.Add(7*time.Millisecond), TickOf(tickBase.Add(7*time.Millisecond), 0), "period 0")
	// Daily ticks fall on UTC midnight.
	assert.Equal(t, tickBase, TickOf(tickBase.Add(-3*time.Hour), 24*time.Hour))
	assert.Equal(t, "job@2030-01-01T00:00:00Z", tickKey("job", tickBase))
	assert.Equal(t, "job@2030-01-01T00:00:00.25Z", tickKey("job", tickBase.Add(250*time.Millisecond)))
}

// backends runs f with two replicas' obtainers: Lockers on one
// redis-server, and Redlocks over three.
func backends(t *testing.T, f func(t *testing.T, a, b obtainer, probe func(rkey string) time.Duration)) {
	t.Run("Locker", func(t *testing.T) {
		srv := redistest.Start(t)
		probe := srv.Client(t)
		f(t, New(srv.Client(t)), New(srv.Client(t)), func(rk string) time.Duration {
			d, err := probe.PTTL(context.Background(), rk).Result()
			require.NoError(t, err)
			return d
		})
	})
	t.Run("Redlock", func(t *testing.T) {
		srvs := redistest.StartN(t, 3)
		rl := func() *Redlock {
			clients := make([]redis.UniversalClient, len(srvs))
			for i, s := range srvs {
				clients[i] = s.Client(t)
			}
			return NewRedlock(clients, WithNodeTimeout(200*time.Millisecond))
		}
		probe := srvs[0].Client(t)
		// One node down: a quorum of two remains.
		srvs[2].Kill(t)
		f(t, rl(), rl(), func(rk string) time.Duration {
			d, err := probe.PTTL(context.Background(), rk).Result()
			require.NoError(t, err)
			return d
		})
	})
}

// TestOncePerTickSkewedReplicas is the double-run case of schedulers on
// several replicas: the job is quick, the winner finishes before the other
// replica's timer fires, and the other replica's clock reads a time on the
// other side of the boundary. Whichever of the two fires first, the job runs
// once per tick, for several ticks in a row.
func TestOncePerTickSkewedReplicas(t *testing.T) {
	const period = time.Second
	const skew = 40 * time.Millisecond
	tests := []struct {
		name          string
		first, second time.Duration // what each replica's clock reads past the boundary
	}{
		{"ahead replica fires first", +skew, -skew},
		{"behind replica fires first", -skew, +skew},
	}
	backends(t, func(t *testing.T, a, b obtainer, pttl func(string) time.Duration) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				var log runLog
				key := "report-" + strings.ReplaceAll(tt.name, " ", "-")
				for k := range 3 {
					tick := tickBase.Add(time.Duration(k) * period)
					ran, err := oncePerTick(ctx, a, clock(tick.Add(tt.first)), key, period, log.fn("a"), nil)
					require.NoError(t, err)
					require.True(t, ran, "tick %d: the first replica must run", k)
					// The first run is over; the second replica fires now.
					ran, err = oncePerTick(ctx, b, clock(tick.Add(tt.second)), key, period, log.fn("b"), nil)
					require.NoError(t, err)
					assert.False(t, ran, "tick %d: the second replica ran too", k)
					assert.Equal(t, []string{"a"}, log.get(tick), "tick %d", k)

					// The tick stays taken after fn, until the window ends.
					left := pttl("distlock:{" + tickKey(key, tick) + "}")
					assert.Greater(t, left, time.Duration(0), "tick %d: key gone after fn", k)
					assert.LessOrEqual(t, left, period-tt.first, "tick %d: kept past the window", k)
				}
			})
		}
	})
}

// TestOncePerTickLockHeldOnlyWhileRunningDoubleRuns is the control of the
// test above: the same sequence with a lock held only while the job runs
// (Do) runs the job twice per tick. It shows the scenario is the one that
// breaks the naive pattern.
func TestOncePerTickLockHeldOnlyWhileRunningDoubleRuns(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a, b := New(srv.Client(t)), New(srv.Client(t))
	runs := 0
	job := func(context.Context) error { runs++; return nil }
	require.NoError(t, a.Do(ctx, "report", job))
	require.NoError(t, b.Do(ctx, "report", job))
	assert.Equal(t, 2, runs)
}

// TestOncePerTickClockBehindFiresLater: the holder's clock is ahead of the
// other replica's by 150ms (under the period/2 bound), so the other
// replica's timer fires 150ms later in real time, long after the quick job
// finished: the tick is still taken.
func TestOncePerTickClockBehindFiresLater(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const period = 400 * time.Millisecond
	const lag = 150 * time.Millisecond
	a, b := New(srv.Client(t)), New(srv.Client(t))
	var log runLog
	for k := range 2 {
		tick := tickBase.Add(time.Duration(k) * period)
		ran, err := oncePerTick(ctx, a, clock(tick.Add(2*time.Millisecond)), "sync", period, log.fn("a"), nil)
		require.NoError(t, err)
		require.True(t, ran)
		// b's clock is lag behind a's: its timer for the same boundary
		// fires lag later in real time. This wait is the simulated
		// schedule, not synchronisation.
		<-time.After(lag)
		ran, err = oncePerTick(ctx, b, clock(tick.Add(2*time.Millisecond)), "sync", period, log.fn("b"), nil)
		require.NoError(t, err)
		assert.False(t, ran, "tick %d: the replica with the slower clock ran too", k)
		assert.Equal(t, []string{"a"}, log.get(tick))
	}
}

// TestOncePerTickManyReplicasConcurrent: five replicas with clocks spread
// over the whole window fire together, tick after tick; each tick runs once.
func TestOncePerTickManyReplicasConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const period = 2 * time.Second
	offsets := []time.Duration{-990 * time.Millisecond, -300 * time.Millisecond, 0, 250 * time.Millisecond, 990 * time.Millisecond}
	lockers := make([]*Locker, len(offsets))
	for i := range lockers {
		lockers[i] = New(srv.Client(t))
	}
	var log runLog
	const ticks = 8
	for k := range ticks {
		tick := tickBase.Add(time.Duration(k) * period)
		var wg sync.WaitGroup
		var ranCount atomic.Int32
		errs := make(chan error, len(offsets))
		for _, i := range rand.Perm(len(offsets)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ran, err := oncePerTick(ctx, lockers[i], clock(tick.Add(offsets[i])), "sweep", period, log.fn(fmt.Sprint(i)), nil)
				if err != nil {
					errs <- err
				}
				if ran {
					ranCount.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		assert.EqualValues(t, 1, ranCount.Load(), "tick %d: runs reported", k)
		assert.Len(t, log.get(tick), 1, "tick %d: runs recorded", k)
	}
}

// TestOncePerTickLongJob: a job that outlasts its period keeps its tick
// taken past the window (the claim is refreshed), and its ctx is cancelled
// when the claim is lost.
func TestOncePerTickLongJob(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t)
	const period = 200 * time.Millisecond
	const live = 300 * time.Millisecond
	a, b := New(srv.Client(t)), New(srv.Client(t))
	rk := "distlock:{" + tickKey("long", tickBase) + "}"
	ran, err := oncePerTick(ctx, a, clock(tickBase), "long", period, func(ctx context.Context, tick time.Time) error {
		// Run past the window (tick+period) and past the liveness TTL:
		// the simulated work of a long job.
		<-time.After(3 * live)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cancelled while held: %w", context.Cause(ctx))
		}
		n, err := client.Exists(ctx, rk).Result()
		if err != nil || n != 1 {
			return fmt.Errorf("claim key gone while the job runs: %d, %v", n, err)
		}
		ran, err := oncePerTick(ctx, b, clock(tickBase.Add(time.Millisecond)), "long", period, func(context.Context, time.Time) error { return nil }, nil)
		if err != nil || ran {
			return fmt.Errorf("second replica: ran %v, err %v", ran, err)
		}
		// Lose the claim: fn's ctx must be cancelled at the next refresh.
		if err := client.Del(ctx, rk).Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			if !errors.Is(context.Cause(ctx), ErrNotHeld) {
				return fmt.Errorf("cause %v, want ErrNotHeld", context.Cause(ctx))
			}
			return ctx.Err()
		case <-time.After(jobWaitTimeout):
			return errors.New("ctx not cancelled after the claim was lost")
		}
	}, []Option{WithTTL(live)})
	assert.True(t, ran)
	require.ErrorIs(t, err, ErrNotHeld)
	require.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, err.Error(), "claim key gone")
	assert.NotContains(t, err.Error(), "second replica")
}

// TestClaimTickFinish: Finish keeps the tick taken exactly until the window
// ends, releases it when the window is over, and reports a claim lost before
// it.
func TestClaimTickFinish(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t)
	lk := New(srv.Client(t))
	const period = 10 * time.Second

	t.Run("keeps until window end", func(t *testing.T) {
		c, err := claimTick(ctx, lk, clock(tickBase.Add(3*time.Second)), "kept", period, nil)
		require.NoError(t, err)
		assert.Equal(t, tickBase, c.Tick())
		assert.Equal(t, tickBase.Add(period), c.WindowEnd())
		rk := "distlock:{" + tickKey("kept", tickBase) + "}"
		pttl, err := client.PTTL(ctx, rk).Result()
		require.NoError(t, err)
		assert.Greater(t, pttl, 29*time.Second, "held with the liveness TTL (default 30s) while working")
		require.NoError(t, c.Finish(ctx))
		require.NoError(t, c.Finish(ctx), "second Finish")
		pttl, err = client.PTTL(ctx, rk).Result()
		require.NoError(t, err)
		assert.Greater(t, pttl, 6*time.Second)
		assert.LessOrEqual(t, pttl, 7*time.Second, "kept until the window ends, not longer")
		_, err = claimTick(ctx, New(srv.Client(t)), clock(tickBase.Add(-4*time.Second)), "kept", period, nil)
		require.ErrorIs(t, err, ErrNotObtained)
		n, err := client.Exists(ctx, fenceKey(rk)).Result()
		require.NoError(t, err)
		assert.Zero(t, n, "no fence counter per tick")
	})

	t.Run("released after the window", func(t *testing.T) {
		const short = 300 * time.Millisecond
		c, err := claimTick(ctx, lk, clock(tickBase), "late", short, []Option{WithFencing()})
		require.NoError(t, err)
		<-time.After(short + 100*time.Millisecond) // the job runs past its window
		require.NoError(t, c.Finish(ctx))
		n, err := client.Exists(ctx, "distlock:{"+tickKey("late", tickBase)+"}").Result()
		require.NoError(t, err)
		assert.Zero(t, n)
	})

	// The wall clock steps forward past the window (NTP, an operator)
	// while the job runs. The window is 10s of real time from the tick:
	// Finish must keep the tick taken for what is left of it, not release
	// it because the wall clock says the window is over.
	t.Run("wall-clock step does not end the window", func(t *testing.T) {
		var jump atomic.Int64
		base := clock(tickBase)
		now := func() time.Time { return base().Add(time.Duration(jump.Load())) }
		c, err := claimTick(ctx, lk, now, "stepped", period, nil)
		require.NoError(t, err)
		jump.Store(int64(period + time.Second)) // the step
		require.NoError(t, c.Finish(ctx))
		pttl, err := client.PTTL(ctx, "distlock:{"+tickKey("stepped", tickBase)+"}").Result()
		require.NoError(t, err)
		assert.Greater(t, pttl, period-time.Second, "tick given back after a wall-clock step")
		assert.LessOrEqual(t, pttl, period)
	})

	t.Run("lost before finish", func(t *testing.T) {
		c, err := claimTick(ctx, lk, clock(tickBase), "lost", period, []Option{WithTTL(300 * time.Millisecond)})
		require.NoError(t, err)
		require.NoError(t, client.FlushAll(ctx).Err())
		select {
		case <-c.Lock().Done():
		case <-time.After(jobWaitTimeout):
			t.Fatal("claim not lost after FLUSHALL")
		}
		require.ErrorIs(t, c.Finish(ctx), ErrNotHeld)
	})
}

func TestOncePerTickErrors(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := New(srv.Client(t))
	nop := func(context.Context, time.Time) error { return nil }

	for _, p := range []time.Duration{0, -time.Second, time.Millisecond} {
		ran, err := lk.OncePerTick(ctx, "k", p, nop)
		assert.False(t, ran)
		assert.ErrorIs(t, err, ErrInvalidArgument, "period %v", p)
	}
	_, err := lk.OncePerTick(ctx, "", time.Second, nop)
	assert.ErrorIs(t, err, ErrInvalidArgument)
	_, err = lk.OncePerTick(ctx, "k", time.Second, nil)
	assert.ErrorIs(t, err, ErrInvalidArgument)
	_, err = lk.OncePerTick(ctx, "k", time.Second, nop, WithTTL(-1))
	assert.ErrorIs(t, err, ErrInvalidArgument)
	_, err = New(nil).OncePerTick(ctx, "k", time.Second, nop)
	assert.ErrorIs(t, err, ErrInvalidArgument)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ran, err := lk.OncePerTick(cctx, "k", time.Second, nop)
	assert.False(t, ran)
	assert.ErrorIs(t, err, context.Canceled)

	// fn's error is returned, and the tick stays taken.
	boom := errors.New("boom")
	now := clock(tickBase)
	ran, err = oncePerTick(ctx, lk, now, "fails", time.Minute, func(context.Context, time.Time) error { return boom }, nil)
	assert.True(t, ran)
	assert.ErrorIs(t, err, boom)
	ran, err = oncePerTick(ctx, lk, now, "fails", time.Minute, nop, nil)
	assert.False(t, ran)
	assert.NoError(t, err)

	// A Redis error is an error, not a taken tick.
	srv.Kill(t)
	ran, err = lk.OncePerTick(ctx, "k", time.Second, nop)
	assert.False(t, ran)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotObtained)
}

// TestOncePerTickRealSchedule runs three replicas with real tickers aligned
// on the boundaries of a short period, for a few ticks.
func TestOncePerTickRealSchedule(t *testing.T) {
	srv := redistest.Start(t)
	const period = 250 * time.Millisecond
	const ticks = 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log runLog
	var wg sync.WaitGroup
	first := time.Now().Add(period).Truncate(period).Add(period)
	errs := make(chan error, 3*ticks)
	for i := range 3 {
		lk := New(srv.Client(t, func(o *redis.Options) { o.PoolSize = 2 }))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range ticks {
				at := first.Add(time.Duration(k) * period)
				select {
				case <-time.After(time.Until(at)):
				case <-ctx.Done():
					return
				}
				if _, err := lk.OncePerTick(ctx, "real", period, log.fn(fmt.Sprint(i))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for k := range ticks {
		tick := first.Add(time.Duration(k) * period)
		assert.Len(t, log.get(tick), 1, "tick %d (%v)", k, tick)
	}
}

// TestOncePerTickRedlockReplicasFireTogether: eight replicas, each with its
// own Redlock over the same three nodes, fire at the same instant for 250
// ticks in a row. When their attempts split the nodes between them (say
// 1+1+1), no replica reaches a quorum; without a retry every replica then
// reports "another replica has the tick" and the tick is lost. Every tick
// must run exactly once.
func TestOncePerTickRedlockReplicasFireTogether(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	const replicas, ticks = 8, 250
	const period = time.Second
	rls := make([]*Redlock, replicas)
	for i := range rls {
		clients := make([]redis.UniversalClient, len(srvs))
		for j, s := range srvs {
			clients[j] = s.Client(t, func(o *redis.Options) { o.PoolSize = 2 })
		}
		rls[i] = NewRedlock(clients, WithNodeTimeout(time.Second))
		// Connect now, one replica at a time: 24 clients dialling (and
		// their pipeliners starting) at the first tick would time out on
		// a loaded machine.
		l, err := rls[i].Obtain(context.Background(), "warm-up")
		require.NoError(t, err)
		require.NoError(t, l.Release(context.Background()))
	}
	ctx := context.Background()
	var log runLog
	for k := range ticks {
		tick := tickBase.Add(time.Duration(k) * period)
		gate := make(chan struct{})
		var wg sync.WaitGroup
		var ranCount atomic.Int32
		errs := make(chan error, replicas)
		for i := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				ran, err := oncePerTick(ctx, rls[i], clock(tick), "together", period, log.fn(fmt.Sprint(i)), []Option{WithTTL(2 * time.Second)})
				if err != nil {
					errs <- err
				}
				if ran {
					ranCount.Add(1)
				}
			}()
		}
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("tick %d: %v", k, err)
		}
		if n := len(log.get(tick)); n != 1 || ranCount.Load() != 1 {
			t.Errorf("tick %d: %d runs recorded, %d reported; want 1", k, n, ranCount.Load())
		}
	}
}
