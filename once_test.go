package distlock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// onceWait bounds every "must happen" wait of these tests.
const onceWait = 10 * time.Second

// oncer is a Locker or a Redlock.
type oncer interface {
	Once(ctx context.Context, key string, window time.Duration, fn func(context.Context) error, opts ...distlock.Option) error
}

// onceSetup is one deployment for the Once tests: procs makes the Locker
// (or Redlock) of a new "process", with clients of its own; nodes are the
// clients to inspect the keys with (one per node).
type onceSetup struct {
	procs func() oncer
	nodes []*redis.Client
}

// exists reports on how many nodes the Redis key rk exists.
func (s onceSetup) exists(t *testing.T, rk string) int {
	t.Helper()
	n := 0
	for _, c := range s.nodes {
		v, err := c.Exists(context.Background(), rk).Result()
		require.NoError(t, err)
		n += int(v)
	}
	return n
}

// subscribers returns how many connections listen on the wake channel of
// rk, summed over the nodes: blocked callers waiting for the outcome.
func (s onceSetup) subscribers(t *testing.T, rk string) int64 {
	t.Helper()
	var n int64
	for _, c := range s.nodes {
		m, err := c.PubSubNumSub(context.Background(), rk+":wake").Result()
		require.NoError(t, err)
		n += m[rk+":wake"]
	}
	return n
}

// onceDeployments runs f on a Locker over one redis-server and on a Redlock
// over three.
func onceDeployments(t *testing.T, f func(t *testing.T, s onceSetup)) {
	t.Run("Locker", func(t *testing.T) {
		srv := redistest.Start(t)
		f(t, onceSetup{
			procs: func() oncer { return distlock.New(srv.Client(t)) },
			nodes: []*redis.Client{srv.Client(t)},
		})
	})
	t.Run("Redlock", func(t *testing.T) {
		srvs := redistest.StartN(t, 3)
		s := onceSetup{procs: func() oncer { return newRL(t, srvs) }}
		for _, srv := range srvs {
			s.nodes = append(s.nodes, srv.Client(t))
		}
		f(t, s)
	})
}

type onceResult struct {
	proc int
	err  error
}

// TestOnceConcurrentProcesses: three processes call Once for the same key
// at the same time, with WithBlocking; the first runs fn, which does not
// return before the other two are blocked waiting for the outcome. fn runs
// once; the runner gets nil and the two waiters ErrAlreadyDone.
func TestOnceConcurrentProcesses(t *testing.T) {
	onceDeployments(t, func(t *testing.T, s onceSetup) {
		ctx, cancel := context.WithTimeout(context.Background(), onceWait)
		defer cancel()
		var runs atomic.Int32
		started := make(chan struct{})
		finish := make(chan struct{})
		fn := func(context.Context) error {
			if runs.Add(1) == 1 {
				close(started)
			}
			<-finish
			return nil
		}
		procs := []oncer{s.procs(), s.procs(), s.procs()}
		results := make(chan onceResult, len(procs))
		for i, p := range procs {
			go func() {
				results <- onceResult{i, p.Once(ctx, "pay:42", time.Minute, fn, distlock.WithBlocking())}
			}()
		}
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("nobody ran fn")
		}
		// Both other processes wait for the outcome (each subscribed to
		// the key's wake channel: once per node).
		require.Eventually(t, func() bool {
			return s.subscribers(t, "distlock:{pay:42}") == int64(2*len(s.nodes))
		}, onceWait, time.Millisecond)
		close(finish)

		var ok, done int
		for range procs {
			r := <-results
			switch {
			case r.err == nil:
				ok++
			case errors.Is(r.err, distlock.ErrAlreadyDone):
				assert.NotErrorIs(t, r.err, distlock.ErrNotObtained)
				done++
			default:
				t.Errorf("process %d: %v", r.proc, r.err)
			}
		}
		assert.Equal(t, int32(1), runs.Load(), "runs of fn")
		assert.Equal(t, 1, ok, "callers that ran fn")
		assert.Equal(t, 2, done, "callers told it was done")
	})
}

// TestOnceInProgress: while fn runs, a caller without WithBlocking gets an
// error matching ErrNotObtained (in progress), not ErrAlreadyDone, and does
// not run fn.
func TestOnceInProgress(t *testing.T) {
	onceDeployments(t, func(t *testing.T, s onceSetup) {
		ctx := context.Background()
		a, b := s.procs(), s.procs()
		started, finish := make(chan struct{}), make(chan struct{})
		errA := make(chan error, 1)
		go func() {
			errA <- a.Once(ctx, "k", time.Minute, func(context.Context) error {
				close(started)
				<-finish
				return nil
			})
		}()
		<-started
		err := b.Once(ctx, "k", time.Minute, func(context.Context) error {
			t.Error("fn ran while another run was in progress")
			return nil
		})
		assert.ErrorIs(t, err, distlock.ErrNotObtained)
		assert.NotErrorIs(t, err, distlock.ErrAlreadyDone)
		close(finish)
		require.NoError(t, <-errA)
	})
}

// TestOnceWindow: a second call right after a success gets ErrAlreadyDone
// and does not run fn; the key stays done for the window counted from the
// success; once the window is over fn runs again.
func TestOnceWindow(t *testing.T) {
	onceDeployments(t, func(t *testing.T, s onceSetup) {
		ctx := context.Background()
		const window = 500 * time.Millisecond
		a, b := s.procs(), s.procs()
		var runs atomic.Int32
		fn := func(context.Context) error { runs.Add(1); return nil }
		slow := func(context.Context) error {
			runs.Add(1)
			// Longer than the window: the window must start at the success.
			time.Sleep(window + 100*time.Millisecond) // the work itself, not synchronisation
			return nil
		}
		started := time.Now()
		require.NoError(t, a.Once(ctx, "cache:home", window, slow))
		assert.Equal(t, int32(1), runs.Load())

		err := b.Once(ctx, "cache:home", window, fn)
		assert.ErrorIs(t, err, distlock.ErrAlreadyDone, "right after the success")
		assert.Equal(t, int32(1), runs.Load(), "fn ran again within the window")
		err = a.Once(ctx, "cache:home", window, fn, distlock.WithBlocking())
		assert.ErrorIs(t, err, distlock.ErrAlreadyDone, "a blocking caller after the success")
		assert.Equal(t, int32(1), runs.Load())

		// The done marker expires at the end of the window.
		require.Eventually(t, func() bool { return s.exists(t, "distlock:{cache:home}") == 0 }, onceWait, time.Millisecond)
		// The success came at least window+100ms after the start (slow's
		// work), so a window counted from the success ends at least
		// 2×window+100ms after it; one counted from the start would end
		// 1.5 windows earlier. (Measured from Once's return instead, a
		// return delayed by a loaded machine made the window look short.)
		assert.GreaterOrEqual(t, time.Since(started), 2*window+100*time.Millisecond-50*time.Millisecond, "done for less than the window after the success")
		require.NoError(t, b.Once(ctx, "cache:home", window, fn))
		assert.Equal(t, int32(2), runs.Load(), "fn did not run again after the window")
	})
}

// TestOnceErrorFreesKey: when fn fails, Once returns its error, the key is
// free at once, and the next call runs fn; when fn panics the key is freed
// too and the panic goes on.
func TestOnceErrorFreesKey(t *testing.T) {
	onceDeployments(t, func(t *testing.T, s onceSetup) {
		ctx := context.Background()
		a, b := s.procs(), s.procs()
		boom := errors.New("card declined")
		err := a.Once(ctx, "pay:7", time.Minute, func(context.Context) error { return boom })
		require.ErrorIs(t, err, boom)
		assert.NotErrorIs(t, err, distlock.ErrNotHeld)
		assert.Equal(t, 0, s.exists(t, "distlock:{pay:7}"), "key kept after fn failed")

		func() {
			defer func() { assert.Equal(t, "boom", recover()) }()
			_ = b.Once(ctx, "pay:7", time.Minute, func(context.Context) error { panic("boom") })
		}()
		assert.Equal(t, 0, s.exists(t, "distlock:{pay:7}"), "key kept after fn panicked")

		ran := false
		require.NoError(t, b.Once(ctx, "pay:7", time.Minute, func(context.Context) error { ran = true; return nil }))
		assert.True(t, ran, "the retry did not run fn")
		assert.Equal(t, len(s.nodes), s.exists(t, "distlock:{pay:7}"), "done marker missing on some node")
	})
}

// TestOnceWaiterLearnsOutcome: a caller blocked (WithBlocking) while
// another process runs fn learns the outcome the moment the run ends, woken
// by the runner (its own fallback re-check is an hour away and the
// runner's TTL 30s, so only the wake-up can end its wait in time): after a
// success it gets ErrAlreadyDone without running fn; after a failure it
// runs fn itself.
func TestOnceWaiterLearnsOutcome(t *testing.T) {
	for _, outcome := range []string{"success", "failure"} {
		t.Run(outcome, func(t *testing.T) {
			onceDeployments(t, func(t *testing.T, s onceSetup) {
				ctx, cancel := context.WithTimeout(context.Background(), onceWait)
				defer cancel()
				a, b := s.procs(), s.procs()
				started, finish := make(chan struct{}), make(chan struct{})
				boom := errors.New("rebuild failed")
				errA := make(chan error, 1)
				go func() {
					errA <- a.Once(ctx, "cache:k", time.Minute, func(context.Context) error {
						close(started)
						<-finish
						if outcome == "failure" {
							return boom
						}
						return nil
					})
				}()
				<-started
				var waiterRan atomic.Bool
				errB := make(chan error, 1)
				go func() {
					errB <- b.Once(ctx, "cache:k", time.Minute, func(context.Context) error {
						waiterRan.Store(true)
						return nil
					}, distlock.WithBlocking(), distlock.WithRetry(distlock.LinearBackoff(time.Hour)))
				}()
				require.Eventually(t, func() bool {
					return s.subscribers(t, "distlock:{cache:k}") == int64(len(s.nodes))
				}, onceWait, time.Millisecond)
				close(finish)
				if outcome == "success" {
					require.NoError(t, <-errA)
					err := <-errB
					assert.ErrorIs(t, err, distlock.ErrAlreadyDone)
					assert.NoError(t, ctx.Err(), "the waiter was not woken")
					assert.False(t, waiterRan.Load(), "the waiter ran fn after a success")
					return
				}
				require.ErrorIs(t, <-errA, boom)
				require.NoError(t, <-errB)
				assert.NoError(t, ctx.Err(), "the waiter was not woken")
				assert.True(t, waiterRan.Load(), "the waiter did not run fn after the failure")
			})
		})
	}
}

// TestOnceLostHold: when the key is taken from the runner while fn runs
// (here deleted by hand), fn's ctx is cancelled with a cause matching
// ErrNotHeld, Once returns an error matching ErrNotHeld, and nothing is
// marked done.
func TestOnceLostHold(t *testing.T) {
	onceDeployments(t, func(t *testing.T, s onceSetup) {
		ctx, cancel := context.WithTimeout(context.Background(), onceWait)
		defer cancel()
		a := s.procs()
		err := a.Once(ctx, "k", time.Minute, func(fctx context.Context) error {
			for _, c := range s.nodes {
				require.NoError(t, c.Del(ctx, "distlock:{k}").Err())
			}
			select {
			case <-fctx.Done():
				assert.ErrorIs(t, context.Cause(fctx), distlock.ErrNotHeld)
				return nil
			case <-ctx.Done():
				return errors.New("fn's ctx was not cancelled on loss")
			}
		}, distlock.WithTTL(2*time.Second)) // loss noticed within TTL/3; node timeout (≤ TTL/10) stays rlNodeTimeout
		require.ErrorIs(t, err, distlock.ErrNotHeld)
		assert.Equal(t, 0, s.exists(t, "distlock:{k}"), "a lost run was marked done")
	})
}

// TestOnceBadInput: bad input and options Once cannot honour return
// ErrInvalidArgument, without running fn or touching Redis.
func TestOnceBadInput(t *testing.T) {
	ctx := context.Background()
	fn := func(context.Context) error { return errors.New("fn ran") }
	srv := redistest.Start(t)
	for name, o := range map[string]oncer{
		"Locker":  distlock.New(srv.Client(t)),
		"Redlock": newRL(t, []*redistest.Server{srv}),
	} {
		tests := []struct {
			name   string
			key    string
			window time.Duration
			fn     func(context.Context) error
			opts   []distlock.Option
		}{
			{"empty key", "", time.Second, fn, nil},
			{"zero window", "k", 0, fn, nil},
			{"negative window", "k", -time.Second, fn, nil},
			{"sub-millisecond window", "k", time.Microsecond, fn, nil},
			{"nil fn", "k", time.Second, nil, nil},
			{"token", "k", time.Second, fn, []distlock.Option{distlock.WithToken("t")}},
			{"fencing", "k", time.Second, fn, []distlock.Option{distlock.WithFencing()}},
			{"replicas", "k", time.Second, fn, []distlock.Option{distlock.WithReplicas(1, 100*time.Millisecond)}},
			{"bad TTL", "k", time.Second, fn, []distlock.Option{distlock.WithTTL(-1)}},
		}
		for _, tt := range tests {
			err := o.Once(ctx, tt.key, tt.window, tt.fn, tt.opts...)
			assert.ErrorIs(t, err, distlock.ErrInvalidArgument, "%s: %s", name, tt.name)
		}
	}
	assert.Equal(t, int64(0), srv.Exec(t, "dbsize"), "bad input wrote to Redis")
	var nilLocker *distlock.Locker
	assert.ErrorIs(t, nilLocker.Once(ctx, "k", time.Second, fn), distlock.ErrInvalidArgument)
	assert.ErrorIs(t, distlock.NewRedlock(nil).Once(ctx, "k", time.Second, fn), distlock.ErrInvalidArgument)
	// Defaults of New that Once cannot honour are left out, not rejected.
	// (WithToken is refused as a default of New altogether.)
	lk := distlock.New(srv.Client(t), distlock.WithFencing(), distlock.WithReplicas(1, 100*time.Millisecond))
	require.NoError(t, lk.Once(ctx, "k", time.Second, func(context.Context) error { return nil }))
	require.ErrorIs(t, lk.Once(ctx, "k", time.Second, fn), distlock.ErrAlreadyDone)
}

// TestOnceRedisDown: a Redis error is returned wrapped, not as contention
// or as done, and fn does not run.
func TestOnceRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t, func(o *redis.Options) { o.MaxRetries = -1 }))
	srv.Kill(t)
	err := lk.Once(context.Background(), "k", time.Second, func(context.Context) error {
		return fmt.Errorf("fn ran")
	})
	require.Error(t, err)
	assert.NotErrorIs(t, err, distlock.ErrNotObtained)
	assert.NotErrorIs(t, err, distlock.ErrAlreadyDone)
	assert.NotErrorIs(t, err, distlock.ErrInvalidArgument)
	assert.NotContains(t, err.Error(), "fn ran")
}

// onceWorkerEnv makes TestOnceWorkerProcess act as one process of
// TestOnceSubprocesses: it holds the address of the redis-server.
const onceWorkerEnv = "DISTLOCK_ONCE_WORKER"

// TestOnceSubprocesses: three separate OS processes (this test binary,
// started again as TestOnceWorkerProcess) call Once for the same key with
// WithBlocking; the runner's fn waits until the other two are blocked on
// the outcome. fn runs once in all: one process runs it, two are told it
// was done.
func TestOnceSubprocesses(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), onceWait)
	defer cancel()
	type out struct {
		b   []byte
		err error
	}
	outs := make(chan out, 3)
	for range 3 {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOnceWorkerProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), onceWorkerEnv+"="+srv.Addr())
		go func() {
			b, err := cmd.CombinedOutput()
			outs <- out{b, err}
		}()
	}
	got := map[string]int{}
	for range 3 {
		o := <-outs
		require.NoError(t, o.err, "%s", o.b)
		m := regexp.MustCompile(`once-outcome: (\w+)`).FindSubmatch(o.b)
		require.NotNil(t, m, "no outcome in the output of a process:\n%s", o.b)
		got[string(m[1])]++
	}
	assert.Equal(t, map[string]int{"ran": 1, "done": 2}, got)
	runs, err := c.Get(ctx, "runs").Int()
	require.NoError(t, err)
	assert.Equal(t, 1, runs, "runs of fn over all processes")
}

// TestOnceWorkerProcess is one process of TestOnceSubprocesses; run
// directly it does nothing.
func TestOnceWorkerProcess(t *testing.T) {
	addr := os.Getenv(onceWorkerEnv)
	if addr == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), onceWait)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	err := distlock.New(c).Once(ctx, "report", time.Minute, func(ctx context.Context) error {
		if err := c.Incr(ctx, "runs").Err(); err != nil {
			return err
		}
		// Return only once the two other processes wait for the outcome.
		for {
			m, err := c.PubSubNumSub(ctx, "distlock:{report}:wake").Result()
			if err != nil {
				return err
			}
			if m["distlock:{report}:wake"] == 2 {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}, distlock.WithBlocking())
	switch {
	case err == nil:
		fmt.Println("once-outcome: ran")
	case errors.Is(err, distlock.ErrAlreadyDone):
		fmt.Println("once-outcome: done")
	default:
		t.Fatalf("once-outcome: error: %v", err)
	}
}

// TestRedlockOnceMinority: a Redlock's Once works with a minority of nodes
// down (the marker goes to the quorum that is up), and a done marker found
// on any single node counts as done: the marker exists only where fn
// succeeded.
func TestRedlockOnceMinority(t *testing.T) {
	ctx := context.Background()
	srvs := redistest.StartN(t, 3)
	a, b := newRL(t, srvs), newRL(t, srvs)
	srvs[2].Kill(t)
	var runs atomic.Int32
	fn := func(context.Context) error { runs.Add(1); return nil }
	require.NoError(t, a.Once(ctx, "k", time.Minute, fn))
	require.ErrorIs(t, b.Once(ctx, "k", time.Minute, fn), distlock.ErrAlreadyDone)
	assert.Equal(t, int32(1), runs.Load())

	// Only node 0 keeps the marker: nodes 1 and 2 alone would make a
	// quorum, but the marker on node 0 still says done.
	srvs[2].Restart(t)
	require.NoError(t, srvs[1].Client(t).Del(ctx, "distlock:{k}").Err())
	require.ErrorIs(t, b.Once(ctx, "k", time.Minute, fn), distlock.ErrAlreadyDone)
	assert.Equal(t, int32(1), runs.Load(), "fn ran again with the marker on one node")
	for i, srv := range srvs[1:] {
		n, err := srv.Client(t).Exists(ctx, "distlock:{k}").Result()
		require.NoError(t, err)
		assert.Zero(t, n, "node %d: the refused attempt left its token", i+1)
	}
}
