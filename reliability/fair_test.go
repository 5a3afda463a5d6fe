package reliability_test

import (
	"context"
	"encoding/json"

	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// Fair waiting (WithFairness) across OS processes: a waiter that dies or
// stops while queued must not hold the others up beyond the stated bound
// (the package doc's Waiting section): a waiter whose process died is
// passed over as soon as Redis has seen its connection close; one that
// stopped (or lost Redis) once its entry expired, entryTTL (2s) after its
// last refresh.

// entryTTL is the library's (fair.go): how long a queue entry outlives its
// waiter's last refresh.
const entryTTL = 2 * time.Second

// fairWaitResult is what a fairwait worker prints once it got the lock.
type fairWaitResult struct {
	Fence int64
}

// fairWaitWorker is one blocked caller of a fair Locker for cfg.Keys[0]:
// it prints a fairWaitResult once it got the lock, then releases it.
func fairWaitWorker(cfg workerConfig) error {
	c := newClient(cfg.LockAddrs[0])
	defer c.Close()
	lk := distlock.New(c, distlock.WithFairness(true))
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	l, err := lk.Obtain(ctx, string(cfg.Keys[0]), distlock.WithBlocking(), distlock.WithTTL(cfg.TTL), distlock.WithFencing(), noRecheck)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(fairWaitResult{Fence: l.Fence()}); err != nil {
		return err
	}
	return l.Release(context.Background())
}

// noRecheck keeps a fair waiter from re-checking by itself (its fallback
// re-check comes after a minute): it gets the lock by the turn a release
// hands it, and so with the fence that release drew. A re-check that came
// just before its turn's message would adopt the turn, with a fence drawn
// for it anew: one more than the tests expect.
var noRecheck = distlock.WithRetry(distlock.LinearBackoff(time.Minute))

// fairQueue is the Redis key of the queue of the lock named key.
func fairQueue(key string) string { return lockKeyOf(key) + ":q" }

// waitQueueLen waits until the queue of key holds n entries.
func waitQueueLen(t *testing.T, c *redis.Client, key string, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := c.LLen(context.Background(), fairQueue(key)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue of %q: %d entries, want %d", key, got, n)
		}
		time.Sleep(time.Millisecond) // polling Redis, not synchronisation between goroutines
	}
}

// fairWaiter is a blocked fair Obtain in this process.
type fairWaiter struct {
	done chan struct{}
	l    *distlock.Lock
	err  error
	at   time.Time
}

func startFairWaiter(ctx context.Context, lk *distlock.Locker, key string) *fairWaiter {
	w := &fairWaiter{done: make(chan struct{})}
	go func() { // owner: the test, which waits on done
		defer close(w.done)
		w.l, w.err = lk.Obtain(ctx, key, distlock.WithBlocking(), distlock.WithTTL(time.Minute), distlock.WithFencing(), noRecheck)
		w.at = time.Now()
	}()
	return w
}

func (w *fairWaiter) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(timeout):
		t.Fatalf("fair waiter did not get the lock within %v", timeout)
	}
	if w.err != nil {
		t.Fatal(w.err)
	}
}

// fairSetup takes key on srv in this process, starts a worker process
// queued for key, and a waiter of this process queued behind it.
func fairSetup(t *testing.T, srv *redistest.Server, admin *redis.Client, key string) (holder *distlock.Lock, wk *worker, behind *fairWaiter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	mine := distlock.New(newClientT(t, srv.Addr()), distlock.WithFairness(true))
	holder, err := mine.Obtain(ctx, key, distlock.WithTTL(time.Minute), distlock.WithFencing())
	if err != nil {
		t.Fatal(err)
	}
	wk = startWorker(t, workerConfig{Job: "fairwait", Mode: modeSingle, LockAddrs: []string{srv.Addr()},
		Keys: [][]byte{[]byte(key)}, TTL: time.Minute, Duration: time.Minute}, false)
	waitQueueLen(t, admin, key, 1)
	other := distlock.New(newClientT(t, srv.Addr()), distlock.WithFairness(true))
	behind = startFairWaiter(ctx, other, key)
	waitQueueLen(t, admin, key, 2)
	t.Cleanup(func() {
		<-behind.done
		if behind.l != nil {
			_ = behind.l.Release(context.Background())
		}
	})
	return holder, wk, behind
}

// fairTrials is how many trials the dead-waiter tests run: 1 in CI, n in
// a soak run.
func fairTrials(n int) int {
	if soaking() {
		return n
	}
	return 1
}

// spread formats the minimum, median and maximum of ds.
func spread(ds []time.Duration) string {
	slices.Sort(ds)
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("min %v, median %v, max %v", r(ds[0]), r(ds[len(ds)/2]), r(ds[len(ds)-1]))
}

// TestFairKilledWaiter: a worker process queued for a lock is killed
// (SIGKILL); the waiter queued behind it gets the lock as soon as the
// holder releases it, not after the dead entry expired (2s), and the turn
// skips the dead entry without drawing a fence for it.
func TestFairKilledWaiter(t *testing.T) {
	srv := redistest.Start(t)
	admin := newClientT(t, srv.Addr())
	var took []time.Duration
	for i := range fairTrials(20) {
		holder, wk, behind := fairSetup(t, srv, admin, "killed-"+strconv.Itoa(i))
		if err := wk.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-wk.done
		released := time.Now()
		if err := holder.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		behind.wait(t, 10*time.Second)
		d := behind.at.Sub(released)
		took = append(took, d)
		if d > entryTTL/2 {
			t.Errorf("the waiter behind a killed one waited %v: the dead entry was not passed over at once", d)
		}
		if got, want := behind.l.Fence(), holder.Fence()+1; got != want {
			t.Errorf("fence %d, want %d: a turn went to the dead entry", got, want)
		}
	}
	t.Logf("RESULT %s: trials=%d: the waiter behind a killed one got the lock after the release: %s (passed over at once; its entry would have expired after %v)",
		t.Name(), len(took), spread(took), entryTTL)
}

// TestFairStoppedWaiter: a worker process queued for a lock is stopped
// (SIGSTOP), as a process cut off from Redis would fall silent. Its entry
// expires within entryTTL of its last refresh; the next turn passes it
// over. Resumed, the worker finds its entry gone, queues again, and gets
// the lock after the waiter that was behind it.
func TestFairStoppedWaiter(t *testing.T) {
	srv := redistest.Start(t)
	admin := newClientT(t, srv.Addr())
	var expired, took []time.Duration
	for i := range fairTrials(5) {
		key := "stopped-" + strconv.Itoa(i)
		holder, wk, behind := fairSetup(t, srv, admin, key)
		e, d := stoppedTrial(t, admin, key, holder, wk, behind)
		expired, took = append(expired, e), append(took, d)
	}
	t.Logf("RESULT %s: trials=%d: the stopped worker's entry expired after it stopped: %s (bound %v); the waiter behind it got the lock after the release: %s; resumed, the worker queued again and got the lock next",
		t.Name(), len(took), spread(expired), entryTTL, spread(took))
}

func stoppedTrial(t *testing.T, admin *redis.Client, key string, holder *distlock.Lock, wk *worker, behind *fairWaiter) (expired, took time.Duration) {
	t.Helper()
	pid := wk.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	entries := func() int {
		keys, err := admin.Keys(context.Background(), fairQueue(key)+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	for entries() != 1 {
		if time.Since(stopped) > entryTTL+5*time.Second {
			t.Fatalf("the stopped worker's entry still exists %v after it stopped", time.Since(stopped))
		}
		time.Sleep(10 * time.Millisecond) // polling Redis, not synchronisation between goroutines
	}
	expired = time.Since(stopped)
	if expired > entryTTL+time.Second {
		t.Errorf("the stopped worker's entry expired %v after it stopped, bound %v", expired, entryTTL)
	}
	released := time.Now()
	if err := holder.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	behind.wait(t, 10*time.Second)
	took = behind.at.Sub(released)
	if took > entryTTL/2 {
		t.Errorf("the waiter behind a stopped one waited %v after the release", took)
	}
	if got, want := behind.l.Fence(), holder.Fence()+1; got != want {
		t.Errorf("fence %d, want %d: a turn went to the stopped entry", got, want)
	}

	// Resumed, the worker queues again and gets the lock next.
	ctx := context.Background()
	before, err := admin.LRange(ctx, fairQueue(key), 0, -1).Result() // the waiter's entry (it lingers)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	for deadline := time.Now().Add(20 * time.Second); ; {
		ids, err := admin.LRange(ctx, fairQueue(key), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(ids, func(id string) bool { return !slices.Contains(before, id) }) {
			break // the worker's new entry
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed worker did not queue again (queue %q)", ids)
		}
		time.Sleep(time.Millisecond) // polling Redis, not synchronisation between goroutines
	}
	if err := behind.l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	var res fairWaitResult
	if err := json.Unmarshal([]byte(wk.line(t, 20*time.Second)), &res); err != nil {
		t.Fatal(err)
	}
	wk.wait(t, 10*time.Second)
	if want := behind.l.Fence() + 1; res.Fence != want {
		t.Errorf("resumed worker's fence %d, want %d", res.Fence, want)
	}
	return expired, took
}

// TestFairFIFOAcrossProcesses: four worker processes queue for a held
// lock one after the other (each started once the one before it is in
// the queue); each gets the lock in the order it queued, one hand-over
// after the other: its fence is the holder's plus its place.
func TestFairFIFOAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	admin := newClientT(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const key, procs = "fifo", 4
	holder, err := distlock.New(newClientT(t, srv.Addr())).Obtain(ctx, key, distlock.WithTTL(time.Minute), distlock.WithFencing())
	if err != nil {
		t.Fatal(err)
	}
	workers := make([]*worker, procs)
	for i := range workers {
		workers[i] = startWorker(t, workerConfig{Job: "fairwait", Mode: modeSingle, LockAddrs: []string{srv.Addr()},
			Keys: [][]byte{[]byte(key)}, TTL: time.Minute, Duration: time.Minute}, false)
		waitQueueLen(t, admin, key, int64(i+1))
	}
	released := time.Now()
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for i, wk := range workers {
		var res fairWaitResult
		if err := json.Unmarshal([]byte(wk.line(t, 20*time.Second)), &res); err != nil {
			t.Fatal(err)
		}
		if want := holder.Fence() + int64(i) + 1; res.Fence != want {
			t.Errorf("worker %d (queued %d.) got fence %d, want %d: not served in queue order", i, i+1, res.Fence, want)
		}
	}
	took := time.Since(released)
	for _, wk := range workers {
		wk.wait(t, 10*time.Second)
	}
	t.Logf("RESULT %s: %d processes queued one after the other got the lock in that order, fences %d..%d, all within %v of the release",
		t.Name(), procs, holder.Fence()+1, holder.Fence()+procs, took.Round(100*time.Microsecond))
}

// TestCheckerHeavyContention: the mutual-exclusion checker with 16
// lockers on one key (and on three), with blocked callers waiting their
// turn (the default) and barging: even goroutines block, odd ones retry
// with SET NX and may barge in whenever the lock is free.
func TestCheckerHeavyContention(t *testing.T) {
	srv := redistest.Start(t)
	store := redistest.Start(t)
	for _, tt := range []struct {
		keys    int
		barging bool
	}{{1, false}, {3, false}, {1, true}} {
		t.Run(fmt.Sprintf("keys=%d/fair=%v", tt.keys, !tt.barging), func(t *testing.T) {
			out := runChecker(t, scenario{
				mode:       modeSingle,
				lockAddrs:  []string{srv.Addr()},
				store:      store,
				keys:       plainKeys(tt.keys),
				procs:      4,
				goroutines: 4,
				duration:   runFor(t, 2*time.Second),
				ttl:        2 * time.Second,
				fencing:    true,
				barging:    tt.barging,
			})
			requireExclusive(t, out)
		})
	}
}
