package main

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/distlock/distlock"
)

// testServer starts one redis-server for the test, or skips without one.
func testServer(t testing.TB) *server {
	t.Helper()
	if _, err := redisServerBinary(); err != nil {
		if os.Getenv("DISTLOCK_REQUIRE_REDIS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	servers, err := startServers(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServers(servers) })
	return servers[0]
}

func testBench(t testing.TB, srv *server) *bench {
	b := &bench{reps: 1, window: 200 * time.Millisecond, c1Window: 300 * time.Millisecond, warmup: 50 * time.Millisecond,
		rbN: map[int]int{}, sets: map[string]*resultSet{}, log: testWriter{t}}
	b.admin = newClient(srv)
	t.Cleanup(func() { b.admin.Close() })
	return b
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// The C1 harness must see overlapping holders: a "lock" that excludes
// nobody produces violations, an in-process mutex none.
func TestContendCountsViolations(t *testing.T) {
	srv := testServer(t)
	b := testBench(t, srv)
	ctx := context.Background()
	none := c1Subject{name: "no lock", sent: new(atomic.Int64), goroutines: c1Shape4x4.goroutines}
	var mu sync.Mutex
	mutex := c1Subject{name: "sync.Mutex", sent: new(atomic.Int64), goroutines: c1Shape4x4.goroutines}
	for i := 0; i < c1Shape4x4.lockers; i++ {
		none.lockers = append(none.lockers, func(string) obtainFunc {
			return func(context.Context) (func(context.Context) error, error) {
				return func(context.Context) error { return nil }, nil
			}
		})
		mutex.lockers = append(mutex.lockers, func(string) obtainFunc {
			return func(context.Context) (func(context.Context) error, error) {
				mu.Lock()
				return func(context.Context) error { mu.Unlock(); return nil }, nil
			}
		})
	}
	r, err := b.contend(ctx, none, "t", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.sections == 0 || r.violations == 0 {
		t.Fatalf("no lock: %d sections, %d violations; want both > 0", r.sections, r.violations)
	}
	r, err = b.contend(ctx, mutex, "t", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.sections == 0 || r.violations != 0 || r.errs != 0 {
		t.Fatalf("sync.Mutex: %d sections, %d violations, %d errors (%v); want sections > 0, no violation, no error",
			r.sections, r.violations, r.errs, r.firstErr)
	}
	if len(r.handoffs)+int(r.reacquired) != int(r.sections)-1 && len(r.handoffs)+int(r.reacquired) != int(r.sections) {
		t.Fatalf("sync.Mutex: %d hand-offs + %d re-acquisitions for %d sections", len(r.handoffs), r.reacquired, r.sections)
	}
}

// S1 must count a lock that disappears from Redis while held as lost, and
// fail the run.
func TestS1CountsLostLocks(t *testing.T) {
	srv := testServer(t)
	b := testBench(t, srv)
	b.s1Locks, b.s1TTL, b.s1Hold = 20, 300*time.Millisecond, time.Second
	ctx := context.Background()
	var deleted int64
	b.s1Held = func(ctx context.Context) error {
		// Delete one lock behind its holder's back.
		n, err := b.admin.Del(ctx, "distlock:{s1:7}").Result()
		deleted = n
		return err
	}
	if err := b.runS1(ctx, srv); err != nil {
		t.Fatal(err)
	}
	if deleted != 1 {
		t.Fatalf("DEL removed %d keys, want 1", deleted)
	}
	if got := b.sets["S1"].med(subjOurs, "lost"); got != 1 {
		t.Fatalf("lost = %v, want 1", got)
	}
	if len(b.failures) != 1 {
		t.Fatalf("failures = %q, want one", b.failures)
	}
}

// BenchmarkCycle is one uncontended obtain+release, for profiling
// (go test -run - -bench Cycle -cpuprofile cpu.out -memprofile mem.out).
func BenchmarkCycle(b *testing.B) {
	srv := testServer(b)
	for _, tc := range []struct {
		name string
		c    func() cycler
	}{
		{"distlock", func() cycler { return oursCycler(distlock.New(newClient(srv), distlock.WithTTL(lockTTL))) }},
		{"distlock-nopipe", func() cycler {
			return oursCycler(distlock.New(newClient(srv), distlock.WithTTL(lockTTL), distlock.WithPipelining(false)))
		}},
		{"redislock", func() cycler { return redislockCycler(redislock.New(newClient(srv))) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cycle := tc.c()("bench:" + tc.name)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cycle(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
