package distlockgocron_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	distlockgocron "github.com/distlock/distlock/contrib/gocron"
	"github.com/distlock/distlock/internal/redistest"
)

func TestMain(m *testing.M) {
	os.Exit(redistest.RunAndCheckLeaks(m, "github.com/go-co-op/gocron"))
}

const waitTimeout = 20 * time.Second

// event is one scheduler's attempt at one tick: whether the job ran.
type event struct {
	replica int
	tick    time.Time
	ran     bool
}

// lateLocker is a gocron.Locker in front of another that makes this
// replica's timer fire late, as a replica whose clock is behind does, and
// reports each attempt once it is over (Lock refused, or Unlock returned).
type lateLocker struct {
	next    gocron.Locker
	late    time.Duration
	replica int
	events  chan<- event
}

func (l *lateLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	fired := time.Now()
	// The simulated late timer: this replica's clock is behind.
	select {
	case <-time.After(l.late):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	tick := fired.Round(time.Second)
	lock, err := l.next.Lock(ctx, key)
	if err != nil {
		l.events <- event{replica: l.replica, tick: tick}
		return nil, err
	}
	return &reportingLock{next: lock, done: func() { l.events <- event{replica: l.replica, tick: tick, ran: true} }}, nil
}

type reportingLock struct {
	next gocron.Lock
	done func()
}

func (r *reportingLock) Unlock(ctx context.Context) error {
	defer r.done()
	return r.next.Unlock(ctx)
}

// runSchedulers runs three gocron schedulers against srv, each with the
// Locker that mk makes for it wrapped to fire late by 0, 150 and 300ms, with
// one job every second, until three ticks have been attempted by all three
// schedulers. It returns the number of runs of each of those ticks.
func runSchedulers(t *testing.T, srv *redistest.Server, mk func(lk *distlock.Locker) gocron.Locker) map[time.Time]int {
	t.Helper()
	events := make(chan event, 64)
	var scheds []gocron.Scheduler
	for i, late := range []time.Duration{0, 150 * time.Millisecond, 300 * time.Millisecond} {
		lk := distlock.New(srv.Client(t))
		s, err := gocron.NewScheduler(gocron.WithDistributedLocker(&lateLocker{next: mk(lk), late: late, replica: i, events: events}))
		require.NoError(t, err)
		_, err = s.NewJob(gocron.CronJob("* * * * * *", true), gocron.NewTask(func() {}), gocron.WithName("report"))
		require.NoError(t, err)
		scheds = append(scheds, s)
	}
	for _, s := range scheds {
		s.Start()
	}
	attempts := map[time.Time]int{}
	runs := map[time.Time]int{}
	var complete []time.Time
	deadline := time.After(waitTimeout)
	for len(complete) < 3 {
		select {
		case ev := <-events:
			attempts[ev.tick]++
			if ev.ran {
				runs[ev.tick]++
			}
			if attempts[ev.tick] == 3 {
				complete = append(complete, ev.tick)
			}
		case <-deadline:
			t.Fatalf("fewer than 3 complete ticks within %v: attempts %v", waitTimeout, attempts)
		}
	}
	var wg sync.WaitGroup
	for _, s := range scheds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, s.Shutdown())
		}()
	}
	// Drain what the schedulers report while they shut down.
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	for {
		select {
		case <-events:
		case <-stopped:
			out := map[time.Time]int{}
			for _, tick := range complete {
				out[tick] = runs[tick]
			}
			return out
		}
	}
}

// TestLockerRunsEachTickOnce: three schedulers, one of them firing 150ms
// late and one 300ms late, long after the quick job has ended: every tick
// runs exactly once.
func TestLockerRunsEachTickOnce(t *testing.T) {
	srv := redistest.Start(t)
	runs := runSchedulers(t, srv, func(lk *distlock.Locker) gocron.Locker {
		return distlockgocron.NewLocker(lk, time.Second)
	})
	require.Len(t, runs, 3)
	for tick, n := range runs {
		assert.Equal(t, 1, n, "tick %v", tick.Format("15:04:05"))
	}
}

// naiveLocker holds a lock only while the job runs, as gocron's Locker
// contract suggests: the double run the Locker above fixes.
type naiveLocker struct{ lk *distlock.Locker }

func (n naiveLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	l, err := n.lk.Obtain(ctx, key)
	if err != nil {
		return nil, err
	}
	return naiveLock{l}, nil
}

type naiveLock struct{ l *distlock.Lock }

func (n naiveLock) Unlock(ctx context.Context) error { return n.l.Release(ctx) }

// TestNaiveLockerRunsTicksTwice is the control: the same schedulers with a
// lock held only while the job runs run each tick more than once, so the
// test above would see a regression to that pattern.
func TestNaiveLockerRunsTicksTwice(t *testing.T) {
	srv := redistest.Start(t)
	runs := runSchedulers(t, srv, func(lk *distlock.Locker) gocron.Locker { return naiveLocker{lk} })
	require.Len(t, runs, 3)
	for tick, n := range runs {
		assert.Greater(t, n, 1, "tick %v", tick.Format("15:04:05"))
	}
}

// TestElectorOneLeaderRunsAll: three schedulers with the Elector; every
// tick runs once, always on the same replica, until the leader closes;
// then another replica takes over.
func TestElectorOneLeaderRunsAll(t *testing.T) {
	srv := redistest.Start(t)
	type run struct {
		replica int
		tick    time.Time
	}
	runs := make(chan run, 64)
	var scheds []gocron.Scheduler
	var electors []*distlockgocron.Elector
	for i := range 3 {
		e := distlockgocron.NewElector(distlock.New(srv.Client(t)), "scheduler-leader", distlock.WithTTL(2*time.Second))
		s, err := gocron.NewScheduler(gocron.WithDistributedElector(e))
		require.NoError(t, err)
		_, err = s.NewJob(gocron.CronJob("* * * * * *", true), gocron.NewTask(func() {
			runs <- run{replica: i, tick: time.Now().Round(time.Second)}
		}), gocron.WithName("report"))
		require.NoError(t, err)
		scheds, electors = append(scheds, s), append(electors, e)
	}
	for _, s := range scheds {
		s.Start()
	}
	next := func() run {
		select {
		case r := <-runs:
			return r
		case <-time.After(waitTimeout):
			t.Fatal("no run within the timeout")
			return run{}
		}
	}
	first := next()
	leader := first.replica
	seen := map[time.Time]bool{first.tick: true}
	for range 3 {
		r := next()
		assert.Equal(t, leader, r.replica, "only the leader runs jobs")
		assert.False(t, seen[r.tick], "tick %v ran twice", r.tick)
		seen[r.tick] = true
	}

	// The leader shuts down and resigns: another replica leads.
	require.NoError(t, scheds[leader].Shutdown())
	require.NoError(t, electors[leader].Close(context.Background()))
	deadline := time.After(waitTimeout)
	for taken := false; !taken; {
		select {
		case r := <-runs:
			taken = r.replica != leader
		case <-deadline:
			t.Fatal("no other replica took over")
		}
	}
	for i, s := range scheds {
		if i != leader {
			require.NoError(t, s.Shutdown())
		}
		require.NoError(t, electors[i].Close(context.Background()))
	}
}

// startOfPeriod waits, when needed, until the first half of a period
// starts (a boundary), so that calls made in the next period/2 count for
// that boundary as a scheduler's would. The wait is the simulated
// schedule, not synchronisation.
func startOfPeriod(period time.Duration) {
	if time.Since(time.Now().Truncate(period)) > period/4 {
		<-time.After(time.Until(time.Now().Truncate(period).Add(period)))
	}
}

func TestLockerErrors(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	l := distlockgocron.NewLocker(distlock.New(srv.Client(t)), 0)
	_, err := l.Lock(ctx, "job")
	assert.ErrorIs(t, err, distlock.ErrInvalidArgument)

	const period = 4 * time.Second
	startOfPeriod(period)
	l = distlockgocron.NewLocker(distlock.New(srv.Client(t)), period)
	lock, err := l.Lock(ctx, "job")
	require.NoError(t, err)
	_, err = distlockgocron.NewLocker(distlock.New(srv.Client(t)), period).Lock(ctx, "job")
	assert.ErrorIs(t, err, distlock.ErrNotObtained)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.NoError(t, lock.Unlock(cctx), "Unlock works with the cancelled ctx of a scheduler shutting down")
	_, err = distlockgocron.NewLocker(distlock.New(srv.Client(t)), period).Lock(ctx, "job")
	assert.ErrorIs(t, err, distlock.ErrNotObtained, "the tick stays taken after Unlock")

	e1 := distlockgocron.NewElector(distlock.New(srv.Client(t)), "lead")
	e2 := distlockgocron.NewElector(distlock.New(srv.Client(t)), "lead")
	require.NoError(t, e1.IsLeader(ctx))
	require.NoError(t, e1.IsLeader(ctx), "still leader")
	assert.ErrorIs(t, e2.IsLeader(ctx), distlockgocron.ErrNotLeader)
	srv.Exec(t, "FLUSHALL")
	require.NoError(t, e2.IsLeader(ctx), "takes over a lost leadership")
	assert.ErrorIs(t, e1.IsLeader(ctx), distlockgocron.ErrNotLeader, "the old leader learns it lost")
	require.NoError(t, e1.Close(ctx))
	require.NoError(t, e2.Close(ctx))
	require.NoError(t, e1.IsLeader(ctx), "free after Close")
	require.NoError(t, e1.Close(ctx))
}

// newSchedulers makes n schedulers, each with its own Locker (period) on
// srv and one job named "report" on the cron line spec running task(i).
func newSchedulers(t *testing.T, srv *redistest.Server, n int, period time.Duration, spec string, task func(replica int)) ([]gocron.Scheduler, []gocron.Job) {
	t.Helper()
	var scheds []gocron.Scheduler
	var jobs []gocron.Job
	for i := range n {
		s, err := gocron.NewScheduler(gocron.WithDistributedLocker(distlockgocron.NewLocker(distlock.New(srv.Client(t)), period)))
		require.NoError(t, err)
		j, err := s.NewJob(gocron.CronJob(spec, true), gocron.NewTask(func() { task(i) }), gocron.WithName("report"))
		require.NoError(t, err)
		scheds, jobs = append(scheds, s), append(jobs, j)
	}
	t.Cleanup(func() {
		for _, s := range scheds {
			assert.NoError(t, s.Shutdown())
		}
	})
	return scheds, jobs
}

// TestLockerRunLongerThanPeriodNeverOverlaps: three schedulers, a job every
// second whose run takes 1.5s. gocron's contract is that the lock is held
// for the whole run; a lock on the tick alone let the next tick's run start
// on another replica while the first was still running. Runs must never
// overlap; the ticks that come during a run are skipped.
func TestLockerRunLongerThanPeriodNeverOverlaps(t *testing.T) {
	srv := redistest.Start(t)
	var running, most atomic.Int32
	ended := make(chan int, 16)
	scheds, _ := newSchedulers(t, srv, 3, time.Second, "* * * * * *", func(replica int) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-time.After(1500 * time.Millisecond) // the job's work
		running.Add(-1)
		ended <- replica
	})
	for _, s := range scheds {
		s.Start()
	}
	for range 3 {
		select {
		case <-ended:
		case <-time.After(waitTimeout):
			t.Fatal("fewer than 3 runs within the timeout")
		}
	}
	assert.EqualValues(t, 1, most.Load(), "runs of the job in progress at once across the replicas")
}

// TestLockerRunNowRunsNow: a job every 2s on three schedulers. A RunNow
// 0.3s after a boundary (whose tick has run) must run now; a RunNow 1.3s
// after it must run now too, without using up the next tick, whose
// scheduled run must still happen, once.
func TestLockerRunNowRunsNow(t *testing.T) {
	srv := redistest.Start(t)
	const period = 2 * time.Second
	type start struct {
		replica int
		at      time.Time
	}
	starts := make(chan start, 32)
	scheds, jobs := newSchedulers(t, srv, 3, period, "*/2 * * * * *", func(replica int) {
		starts <- start{replica, time.Now()}
	})
	for _, s := range scheds {
		s.Start()
	}
	next := func(what string) start {
		t.Helper()
		select {
		case st := <-starts:
			return st
		case <-time.After(waitTimeout):
			t.Fatalf("no run within the timeout: %s", what)
			return start{}
		}
	}
	noRun := func(d time.Duration, what string) {
		t.Helper()
		select {
		case st := <-starts:
			t.Fatalf("%s: replica %d ran at %s", what, st.replica, st.at.Format("15:04:05.000"))
		case <-time.After(d):
		}
	}
	first := next("first scheduled run")
	boundary := first.at.Truncate(period)
	noRun(time.Until(boundary.Add(300*time.Millisecond)), "the first tick ran twice")

	// 0.3s after the boundary: the tick has run; RunNow must still run.
	require.NoError(t, jobs[0].RunNow())
	st := next("RunNow at boundary+0.3s")
	assert.Equal(t, 0, st.replica)
	assert.Less(t, st.at.Sub(boundary), 800*time.Millisecond, "RunNow at boundary+0.3s ran late")

	// 1.3s after the boundary: nearer to the next boundary than to this one.
	noRun(time.Until(boundary.Add(1300*time.Millisecond)), "a run between RunNows")
	require.NoError(t, jobs[1].RunNow())
	st = next("RunNow at boundary+1.3s")
	assert.Equal(t, 1, st.replica)
	assert.Less(t, st.at.Sub(boundary), 1800*time.Millisecond, "RunNow at boundary+1.3s ran late")

	// The next tick's scheduled run happens, once.
	st = next("the scheduled run after the RunNows")
	assert.WithinDuration(t, boundary.Add(period), st.at, 500*time.Millisecond, "the next tick's run")
	noRun(time.Until(boundary.Add(period+800*time.Millisecond)), "the next tick ran twice")
}

// TestElectorRedlockSplitVote: three replicas with an Elector over the same
// three Redis nodes ask IsLeader at the same instant while nobody leads,
// as their schedulers do at a tick. When their attempts split the nodes
// (one each), nobody reaches a quorum; without a retry every replica
// skips the job. Each round (a fresh leadership) must elect exactly one.
func TestElectorRedlockSplitVote(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	const replicas, rounds = 3, 100
	rls := make([]*distlock.Redlock, replicas)
	for i := range rls {
		clients := make([]redis.UniversalClient, len(srvs))
		for j, s := range srvs {
			clients[j] = s.Client(t)
		}
		rls[i] = distlock.NewRedlock(clients, distlock.WithNodeTimeout(time.Second))
		// Connect now, one replica at a time, not all at the first round.
		l, err := rls[i].Obtain(context.Background(), "warm-up")
		require.NoError(t, err)
		require.NoError(t, l.Release(context.Background()))
	}
	ctx := context.Background()
	noLeader := 0
	for k := range rounds {
		key := fmt.Sprintf("leader-%d", k)
		electors := make([]*distlockgocron.Elector, replicas)
		for i := range electors {
			electors[i] = distlockgocron.NewElector(rls[i], key, distlock.WithTTL(5*time.Second))
		}
		gate := make(chan struct{})
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		for i := range electors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				errs[i] = electors[i].IsLeader(ctx)
			}()
		}
		close(gate)
		wg.Wait()
		leaders := 0
		for _, err := range errs {
			switch {
			case err == nil:
				leaders++
			case !errors.Is(err, distlockgocron.ErrNotLeader):
				t.Errorf("round %d: %v", k, err)
			}
		}
		if leaders == 0 {
			noLeader++
		}
		assert.LessOrEqual(t, leaders, 1, "round %d: two leaders", k)
		for _, e := range electors {
			require.NoError(t, e.Close(ctx))
		}
	}
	assert.Zero(t, noLeader, "rounds of %d in which nobody led", rounds)
}

// TestLockerLateCall: a scheduler that has not fired for the last boundary
// calls Lock 1.2s after it, with a period of 2s: too late to be that
// boundary's scheduled run, and not after one either, so it cannot be told
// from a scheduled run that fired late (which another replica has probably
// run already). It is skipped with ErrLate, not run and not counted for the
// next boundary. The same Locker's next call, now after its call for the
// boundary, is off the schedule (a RunNow): it runs.
func TestLockerLateCall(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const period = 2 * time.Second
	// The simulated schedule: 1.2s after a boundary.
	<-time.After(time.Until(time.Now().Truncate(period).Add(period + 1200*time.Millisecond)))
	l := distlockgocron.NewLocker(distlock.New(srv.Client(t)), period)
	_, err := l.Lock(ctx, "job")
	require.ErrorIs(t, err, distlockgocron.ErrLate)
	lock, err := l.Lock(ctx, "job")
	require.NoError(t, err, "a RunNow after the boundary's call")
	_, err = distlockgocron.NewLocker(distlock.New(srv.Client(t)), period).Lock(ctx, "job")
	assert.ErrorIs(t, err, distlockgocron.ErrLate)
	require.NoError(t, lock.Unlock(ctx))
	// No tick was claimed: only the run lock was ever taken.
	keys, err := srv.Client(t).Keys(ctx, "*").Result()
	require.NoError(t, err)
	assert.Empty(t, keys)
}
