package distlock_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// deployment is a Redis deployment the shared-lock tests run on: a single
// node, or a 3-master Cluster. client returns a new client each time, a
// stand-in for another process.
type deployment struct {
	mode   string // "single" or "cluster"
	addrs  []string
	client func(t *testing.T) redis.UniversalClient
}

// deployments runs f on a single node and on a 3-master Cluster.
func deployments(t *testing.T, f func(t *testing.T, d deployment)) {
	t.Run("single", func(t *testing.T) {
		srv := redistest.Start(t)
		f(t, deployment{mode: "single", addrs: []string{srv.Addr()},
			client: func(t *testing.T) redis.UniversalClient { return srv.Client(t) }})
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3)
		f(t, deployment{mode: "cluster", addrs: c.Addrs(),
			client: func(t *testing.T) redis.UniversalClient { return c.Client(t) }})
	})
}

// TestLimitNeverExceeded: 4 Lockers (each with its own client, as 4
// processes would have) × 4 goroutines run Do with WithLimit(3) in a loop.
// The guarded resource counts who is inside, in Redis (INCR/DECR) and in
// the process: it must never see more than 3, and must see 3 (the
// semaphore admits n, it is not a mutex).
func TestLimitNeverExceeded(t *testing.T) {
	deployments(t, func(t *testing.T, d deployment) {
		const limit, procs, workers, rounds = 3, 4, 4, 15
		ctx := context.Background()
		store := d.client(t)
		inside := "exports-inside{x}"
		require.NoError(t, store.Del(ctx, inside).Err())
		var cur, most, violations, sections atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, procs*workers)
		for p := range procs {
			lk := distlock.New(d.client(t))
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range rounds {
						cctx, cancel := context.WithTimeout(ctx, waitTimeout)
						err := lk.Do(cctx, "exports", func(ctx context.Context) error {
							n := cur.Add(1)
							defer cur.Add(-1)
							for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
							}
							in, err := store.Incr(ctx, inside).Result()
							if err != nil {
								return err
							}
							defer store.Decr(context.WithoutCancel(ctx), inside)
							if n > limit || in > limit {
								violations.Add(1)
							}
							sections.Add(1)
							time.Sleep(time.Duration(1+(p+w+r)%4) * time.Millisecond) // the work
							return nil
						}, distlock.WithLimit(limit), distlock.WithBlocking(), distlock.WithTTL(2*time.Second))
						cancel()
						if err != nil {
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
		assert.Zero(t, violations.Load(), "more than %d holders inside", limit)
		assert.EqualValues(t, procs*workers*rounds, sections.Load())
		assert.EqualValues(t, limit, most.Load(), "most holders inside at once")
		n, err := store.Get(ctx, inside).Int()
		require.NoError(t, err)
		assert.Zero(t, n, "inside counter after the run")
		st, err := distlock.New(store).Status(ctx, "exports")
		require.NoError(t, err)
		assert.Equal(t, distlock.StateFree, st.State(), "every permit given back: %+v", st)
	})
}

// TestReadersShareWritersExclude: two readers hold at once; a writer (a
// plain Obtain) cannot get in while either holds, and readers cannot while
// the writer holds. Then 4 Lockers × 4 goroutines, readers and writers
// mixed, all blocking: a writer never shares the key with anyone, and
// readers do share it.
func TestReadersShareWritersExclude(t *testing.T) {
	deployments(t, func(t *testing.T, d deployment) {
		ctx := context.Background()
		lk := distlock.New(d.client(t))
		other := distlock.New(d.client(t))

		r1, err := lk.Obtain(ctx, "config", distlock.WithShared())
		require.NoError(t, err)
		r2, err := other.Obtain(ctx, "config", distlock.WithShared())
		require.NoError(t, err)
		_, err = other.Obtain(ctx, "config")
		assert.ErrorIs(t, err, distlock.ErrNotObtained, "a writer got in beside two readers")
		st, err := lk.Status(ctx, "config")
		require.NoError(t, err)
		assert.Equal(t, distlock.StateHeld, st.State())
		assert.Equal(t, 2, st.Shared)
		assert.Greater(t, st.TTL, 20*time.Second)

		require.NoError(t, r1.Release(ctx))
		_, err = other.Obtain(ctx, "config")
		assert.ErrorIs(t, err, distlock.ErrNotObtained, "a writer got in beside a reader")
		require.NoError(t, r2.Release(ctx))

		w, err := other.Obtain(ctx, "config")
		require.NoError(t, err, "the writer, once the readers left")
		_, err = lk.Obtain(ctx, "config", distlock.WithShared())
		assert.ErrorIs(t, err, distlock.ErrNotObtained, "a reader got in beside the writer")
		_, err = lk.Obtain(ctx, "config", distlock.WithLimit(5))
		assert.ErrorIs(t, err, distlock.ErrNotObtained, "a permit got in beside the writer")
		st, err = lk.Status(ctx, "config")
		require.NoError(t, err)
		assert.Equal(t, 0, st.Shared)
		assert.True(t, st.Held)
		require.NoError(t, w.Release(ctx))

		// Mixed, blocking: goroutine 0 of each Locker writes. No wait may
		// last 2s: a writer's claim lasts at least its TTL (2s), so a
		// wait that only its expiry ends shows (a Locker's blocked reader
		// kept out by the claim of the same Locker's writer queued behind
		// it did, before the claim became the Locker's).
		const procs, workers, rounds = 4, 4, 12
		var readers, writers, mostReaders, violations, longest atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, procs*workers)
		for range procs {
			lk := distlock.New(d.client(t))
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					opts := []distlock.Option{distlock.WithBlocking(), distlock.WithTTL(2 * time.Second)}
					if w != 0 {
						opts = append(opts, distlock.WithShared())
					}
					for range rounds {
						cctx, cancel := context.WithTimeout(ctx, waitTimeout)
						start := time.Now()
						err := lk.Do(cctx, "config", func(context.Context) error {
							if waited := int64(time.Since(start)); waited > longest.Load() {
								longest.Store(waited) // racy max: good enough for one slow wait
							}
							if w == 0 {
								n := writers.Add(1)
								defer writers.Add(-1)
								if n != 1 || readers.Load() != 0 {
									violations.Add(1)
								}
							} else {
								n := readers.Add(1)
								defer readers.Add(-1)
								if writers.Load() != 0 {
									violations.Add(1)
								}
								for m := mostReaders.Load(); n > m && !mostReaders.CompareAndSwap(m, n); m = mostReaders.Load() {
								}
							}
							time.Sleep(2 * time.Millisecond) // the work
							return nil
						}, opts...)
						cancel()
						if err != nil {
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
		assert.Zero(t, violations.Load(), "a writer overlapped another holder")
		assert.GreaterOrEqual(t, mostReaders.Load(), int64(2), "readers never overlapped")
		assert.Less(t, time.Duration(longest.Load()), 2*time.Second, "longest wait")
	})
}

// readerHold is how long each reader of the stream holds its lease.
const readerHold = 50 * time.Millisecond

// TestWriterNotStarvedByReaders: 4 readers take turns so that the key is
// never without a reader (each holds readerHold, and they start
// staggered). A writer that blocks on the key must get in within the
// stated bound: once the leases held at its first attempt end (readerHold
// at most), plus one wake-up; 1s of slack is allowed for a loaded
// machine. Without the waiting writer's claim the writer waits as long as
// the stream lasts (5s). Afterwards the readers go on.
func TestWriterNotStarvedByReaders(t *testing.T) {
	deployments(t, func(t *testing.T, d deployment) {
		ctx := context.Background()
		stop := make(chan struct{})
		var sections atomic.Int64
		var readers, overlaps atomic.Int64
		writing := atomic.Bool{}
		streamEnd := time.Now().Add(5 * time.Second)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := range 4 {
			lk := distlock.New(d.client(t))
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * readerHold / 4) // staggered, so that the stream has no gap
				for time.Now().Before(streamEnd) {
					select {
					case <-stop:
						return
					default:
					}
					cctx, cancel := context.WithTimeout(ctx, waitTimeout)
					l, err := lk.Obtain(cctx, "doc", distlock.WithShared(), distlock.WithBlocking(), distlock.WithTTL(2*time.Second))
					cancel()
					if err != nil {
						errs <- err
						return
					}
					readers.Add(1)
					if writing.Load() {
						overlaps.Add(1)
					}
					time.Sleep(readerHold) // reading
					sections.Add(1)
					readers.Add(-1)
					if err := l.Release(ctx); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		defer func() {
			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		}()
		// Let the stream run for a while first.
		deadline := time.Now().Add(waitTimeout)
		for sections.Load() < 8 {
			require.True(t, time.Now().Before(deadline), "the readers do not run")
			time.Sleep(5 * time.Millisecond) // polling a counter in the test, not synchronising the library
		}
		lk := distlock.New(d.client(t))
		cctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		start := time.Now()
		w, err := lk.Obtain(cctx, "doc", distlock.WithBlocking(), distlock.WithTTL(2*time.Second))
		waited := time.Since(start)
		require.NoError(t, err)
		writing.Store(true)
		assert.Zero(t, readers.Load(), "a reader was inside when the writer got in")
		t.Logf("writer waited %v behind the reader stream", waited)
		assert.Less(t, waited, readerHold+time.Second, "the writer waited longer than the bound")
		time.Sleep(20 * time.Millisecond) // writing
		writing.Store(false)
		before := sections.Load()
		require.NoError(t, w.Release(ctx))
		assert.Zero(t, overlaps.Load(), "a reader got in while the writer held")
		// The readers held back by the writer go on.
		deadline = time.Now().Add(waitTimeout)
		for sections.Load() < before+4 {
			require.True(t, time.Now().Before(deadline), "the readers did not go on after the writer")
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// permitHolderEnv makes this test binary a permit holder (see TestMain):
// "mode addr,addr key limit ttl-in-ms".
const permitHolderEnv = "DISTLOCK_TEST_PERMIT_HOLDER"

// runPermitHolder takes one auto-refreshed permit, prints "held", and
// holds it until killed.
func runPermitHolder(spec string) int {
	var mode, addrs, key string
	var limit, ttlMs int
	if _, err := fmt.Sscan(spec, &mode, &addrs, &key, &limit, &ttlMs); err != nil {
		fmt.Fprintln(os.Stderr, "permit holder:", err)
		return 2
	}
	var client redis.UniversalClient
	if mode == "cluster" {
		client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	} else {
		client = redis.NewClient(&redis.Options{Addr: addrs})
	}
	l, err := distlock.New(client).Obtain(context.Background(), key, distlock.WithLimit(limit), distlock.WithTTL(time.Duration(ttlMs)*time.Millisecond), distlock.WithAutoRefresh())
	if err != nil {
		fmt.Fprintln(os.Stderr, "permit holder:", err)
		return 1
	}
	fmt.Println("held")
	<-l.Done() // until killed
	fmt.Fprintln(os.Stderr, "permit holder: lost", l.Err())
	return 1
}

// TestPermitOfKilledHolderComesBack: another process takes one of 2
// permits (TTL 1s, auto-refreshed) and is killed with SIGKILL while it
// holds it. Meanwhile the second permit works as usual and a third caller
// finds both taken; after the kill the dead permit comes back by itself,
// within its TTL (its last refresh was at most TTL/3 before the kill)
// plus a margin, to a caller blocked on it.
func TestPermitOfKilledHolderComesBack(t *testing.T) {
	deployments(t, func(t *testing.T, d deployment) {
		const ttl = time.Second
		ctx := context.Background()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %d %d", permitHolderEnv, d.mode, strings.Join(d.addrs, ","), "export", 2, ttl.Milliseconds()))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() { // owner: this test, which waits for exited below
			_ = cmd.Wait()
			close(exited)
		}()
		killed := false
		defer func() {
			if !killed {
				_ = cmd.Process.Kill()
			}
			<-exited
		}()
		line := make(chan string, 1)
		go func() { // ends when the holder prints or exits
			s, _ := bufio.NewReader(out).ReadString('\n')
			line <- s
		}()
		select {
		case s := <-line:
			require.Equal(t, "held\n", s)
		case <-time.After(waitTimeout):
			t.Fatal("the holder process did not take its permit")
		}

		lk := distlock.New(d.client(t))
		mine, err := lk.Obtain(ctx, "export", distlock.WithLimit(2), distlock.WithTTL(5*time.Second))
		require.NoError(t, err, "the second permit")
		_, err = lk.Obtain(ctx, "export", distlock.WithLimit(2))
		require.ErrorIs(t, err, distlock.ErrNotObtained, "a third permit")
		st, err := lk.Status(ctx, "export")
		require.NoError(t, err)
		assert.Equal(t, 2, st.Shared)

		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		killed = true
		<-exited
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		// Without the expiry cap the fallback re-check (a minute here)
		// would be the only way to notice: no release is published.
		back, err := lk.Obtain(cctx, "export", distlock.WithLimit(2), distlock.WithBlocking(),
			distlock.WithRetry(distlock.LinearBackoff(time.Minute)))
		waited := time.Since(start)
		require.NoError(t, err, "the dead holder's permit")
		t.Logf("the dead holder's permit came back %v after the kill", waited)
		assert.Less(t, waited, ttl+500*time.Millisecond)
		assert.NoError(t, mine.Err(), "the live permit")
		require.NoError(t, back.Release(ctx))
		require.NoError(t, mine.Release(ctx))
	})
}

// TestBlockedPermitWokenByRelease: a caller blocked on a full semaphore,
// whose fallback re-check is a minute away and whose holder's TTL is 30s,
// gets the permit as soon as it is released: the release publishes.
func TestBlockedPermitWokenByRelease(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	holder, err := distlock.New(srv.Client(t)).Obtain(ctx, "slot", distlock.WithLimit(1))
	require.NoError(t, err)
	got := make(chan error, 1)
	waiting := distlock.New(srv.Client(t))
	go func() { // owner: this test, which receives from got
		cctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		l, err := waiting.Obtain(cctx, "slot", distlock.WithLimit(1), distlock.WithBlocking(),
			distlock.WithRetry(distlock.LinearBackoff(time.Minute)))
		if err == nil {
			err = l.Release(ctx)
		}
		got <- err
	}()
	// Let the waiter subscribe and attempt (the wait is what is tested:
	// a release before it only makes the test pass sooner).
	time.Sleep(300 * time.Millisecond)
	released := time.Now()
	require.NoError(t, holder.Release(ctx))
	select {
	case err := <-got:
		require.NoError(t, err)
		assert.Less(t, time.Since(released), 2*time.Second)
	case <-time.After(waitTimeout):
		t.Fatal("the blocked caller was not woken by the release")
	}
}

// TestSharedLeaseLifecycle: each lease is a Lock of its own. A lease that
// is not refreshed expires alone while another lives on; Refresh, TTL and
// Release answer for the one lease; fences grow per lease and a writer's
// is above the readers'; a lease whose key was deleted by hand is lost at
// its next refresh; a writer's stale Lock does not touch the readers'
// marker.
func TestSharedLeaseLifecycle(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))

	short, err := lk.Obtain(ctx, "k", distlock.WithShared(), distlock.WithTTL(300*time.Millisecond), distlock.WithFencing())
	require.NoError(t, err)
	long, err := lk.Obtain(ctx, "k", distlock.WithShared(), distlock.WithTTL(300*time.Millisecond), distlock.WithAutoRefresh(), distlock.WithFencing())
	require.NoError(t, err)
	assert.Greater(t, long.Fence(), short.Fence())
	d, err := long.TTL(ctx)
	require.NoError(t, err)
	assert.LessOrEqual(t, d, 300*time.Millisecond)
	assert.NotEqual(t, short.Token(), long.Token())

	waitClosed(t, short.Done(), waitTimeout, "the unrefreshed lease")
	assert.ErrorIs(t, short.Err(), distlock.ErrNotHeld)
	assert.ErrorIs(t, short.Refresh(ctx, 0), distlock.ErrNotHeld)
	time.Sleep(400 * time.Millisecond) // past short's TTL in Redis too
	assert.NoError(t, long.Err(), "the refreshed lease lives on")
	st, err := lk.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, 1, st.Shared, "the expired lease is not counted")
	require.NoError(t, long.Refresh(ctx, time.Second))
	d, err = long.TTL(ctx)
	require.NoError(t, err)
	assert.Greater(t, d, 500*time.Millisecond)

	require.NoError(t, long.Release(ctx))
	assert.ErrorIs(t, long.Release(ctx), distlock.ErrNotHeld, "a second release")
	assert.EqualValues(t, 0, srv.Exec(t, "EXISTS", "distlock:{k}", "distlock:{k}:shared"), "the last lease out deletes the marker and the set")

	w, err := lk.Obtain(ctx, "k", distlock.WithFencing(), distlock.WithTTL(200*time.Millisecond))
	require.NoError(t, err)
	assert.Greater(t, w.Fence(), long.Fence(), "the writer's fence")
	waitClosed(t, w.Done(), waitTimeout, "the writer's lock")
	time.Sleep(50 * time.Millisecond) // past its TTL in Redis
	r, err := lk.Obtain(ctx, "k", distlock.WithShared(), distlock.WithAutoRefresh(), distlock.WithTTL(300*time.Millisecond))
	require.NoError(t, err)
	assert.ErrorIs(t, w.Release(ctx), distlock.ErrNotHeld, "the writer's stale lock")
	assert.ErrorIs(t, w.Refresh(ctx, 0), distlock.ErrNotHeld)
	assert.NoError(t, r.Err())
	assert.Equal(t, "\x00shared", srv.Exec(t, "GET", "distlock:{k}"), "the marker")

	srv.Exec(t, "DEL", "distlock:{k}") // distlock release --force
	waitClosed(t, r.Done(), waitTimeout, "a lease whose key was deleted")
	assert.ErrorIs(t, r.Err(), distlock.ErrNotHeld)
	assert.ErrorIs(t, r.Release(ctx), distlock.ErrNotHeld)
}

// TestSharedRejectedOptions: what a shared lease cannot honour, and the
// calls that cannot take one, fail with ErrInvalidArgument before any
// attempt.
func TestSharedRejectedOptions(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t)
	lk := distlock.New(client)
	nodes := []redis.UniversalClient{srv.Client(t), srv.Client(t), srv.Client(t)}
	noop := func(context.Context) error { return nil }
	tests := []struct {
		name string
		call func() error
	}{
		{"WithLimit(0)", func() error { _, err := lk.Obtain(ctx, "k", distlock.WithLimit(0)); return err }},
		{"WithLimit(-1) in Do", func() error { return lk.Do(ctx, "k", noop, distlock.WithLimit(-1)) }},
		{"WithToken", func() error {
			_, err := lk.Obtain(ctx, "k", distlock.WithShared(), distlock.WithToken("t"))
			return err
		}},
		{"WithReplicas", func() error {
			_, err := lk.Obtain(ctx, "k", distlock.WithLimit(2), distlock.WithReplicas(1, time.Second))
			return err
		}},
		{"New default", func() error {
			_, err := distlock.New(client, distlock.WithShared()).Obtain(ctx, "k")
			return err
		}},
		{"NewRedlock default", func() error {
			_, err := distlock.NewRedlock(nodes, distlock.WithLimit(2)).Obtain(ctx, "k")
			return err
		}},
		{"Redlock WithLimit", func() error {
			_, err := distlock.NewRedlock(nodes).Obtain(ctx, "k", distlock.WithLimit(2))
			return err
		}},
		{"Redlock WithShared", func() error {
			return distlock.NewRedlock(nodes).Do(ctx, "k", noop, distlock.WithShared())
		}},
		{"Once", func() error { return lk.Once(ctx, "k", time.Minute, noop, distlock.WithShared()) }},
		{"Lead", func() error { return lk.Lead(ctx, "k", noop, distlock.WithLimit(2)) }},
		{"ClaimTick", func() error { _, err := lk.ClaimTick(ctx, "k", time.Minute, distlock.WithShared()); return err }},
		{"OncePerTick", func() error {
			_, err := lk.OncePerTick(ctx, "k", time.Minute, func(context.Context, time.Time) error { return nil }, distlock.WithLimit(3))
			return err
		}},
		{"a token starting with NUL", func() error {
			_, err := lk.Obtain(ctx, "k", distlock.WithToken("\x00shared"))
			return err
		}},
	}
	for _, tt := range tests {
		err := tt.call()
		assert.ErrorIs(t, err, distlock.ErrInvalidArgument, tt.name)
		assert.False(t, errors.Is(err, distlock.ErrNotObtained), tt.name)
	}
	assert.EqualValues(t, 0, srv.Exec(t, "DBSIZE"), "nothing was written")
}
