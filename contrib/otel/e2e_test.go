package distlockotel_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// spanCounts counts the ended spans by name and, for hold spans, by end.
func (r *rig) spanCounts() map[string]int {
	n := map[string]int{}
	for _, s := range r.spans.Ended() {
		n[s.Name()]++
		if end, ok := spanAttr(s, "distlock.lock.end"); ok {
			n[s.Name()+"/"+end.AsString()]++
		}
	}
	return n
}

// A Locker on a real Redis, driven through a known sequence: an obtain, a
// contended obtain, a refresh, a release, a Do, a lock whose key is
// deleted (lost at its next refresh) and one left to expire. The metrics
// and spans count each of them once, and the held count ends at 0.
func TestLockerEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	r := newRig(t)
	// Done closes before the loss is reported (both happen as the lock
	// ends), so the test waits for the report itself.
	lost := make(chan string, 10)
	obs := distlock.ObserverFunc(func(e distlock.Event) {
		r.obs.Observe(e)
		if e.Kind == distlock.EventLost {
			lost <- e.Key
		}
	})
	lk := distlock.New(client, distlock.WithObserver(obs), distlock.WithTTL(5*time.Second))
	ctx := context.Background()

	a, err := lk.Obtain(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.metrics(t).sum(t, mHeld, attrs("distlock.redlock=false")); got != 1 {
		t.Errorf("held while a is held: %d, want 1", got)
	}
	if _, err := lk.Obtain(ctx, "a"); !errors.Is(err, distlock.ErrNotObtained) {
		t.Fatalf("second obtain of a: %v, want ErrNotObtained", err)
	}
	if err := a.Refresh(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lk.Do(ctx, "b", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}

	// Lost: the key is deleted behind the holder's back; its next refresh
	// learns it. The Release after that reports nothing more.
	c, err := lk.Obtain(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if err := client.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx, 0); !errors.Is(err, distlock.ErrNotHeld) {
		t.Fatalf("refresh of a deleted lock: %v, want ErrNotHeld", err)
	}
	select {
	case k := <-lost:
		if k != "c" {
			t.Fatalf("lost %q, want c", k)
		}
	default:
		t.Fatal("the Refresh that found the lock gone did not report the loss")
	}
	if err := c.Release(ctx); !errors.Is(err, distlock.ErrNotHeld) {
		t.Fatalf("release of a lost lock: %v, want ErrNotHeld", err)
	}

	// Expired: nothing refreshes it.
	e, err := lk.Obtain(ctx, "e", distlock.WithTTL(150*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the unrefreshed lock did not end within 5s")
	}
	select {
	case k := <-lost:
		if k != "e" {
			t.Fatalf("lost %q, want e", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the expired lock's loss was not reported within 5s")
	}

	m := r.metrics(t)
	sums := []struct {
		name string
		set  []string
		want int64
	}{
		{mAttempts, []string{"distlock.redlock=false", "distlock.attempt.outcome=obtained"}, 4},
		{mAttempts, []string{"distlock.redlock=false", "distlock.attempt.outcome=contended"}, 1},
		{mHeld, []string{"distlock.redlock=false"}, 0},
		{mRefresh, []string{"distlock.redlock=false", "distlock.refresh.outcome=ok"}, 1},
		{mLosses, []string{"distlock.redlock=false", "distlock.loss.cause=deleted_or_taken_over"}, 1},
		{mLosses, []string{"distlock.redlock=false", "distlock.loss.cause=expired"}, 1},
	}
	for _, tt := range sums {
		if got := m.sum(t, tt.name, attrs(tt.set...)); got != tt.want {
			t.Errorf("%s%v = %d, want %d", tt.name, tt.set, got, tt.want)
		}
	}
	hists := []struct {
		name string
		set  []string
		want uint64
	}{
		{mObtain, []string{"distlock.redlock=false", "distlock.obtain.outcome=obtained"}, 4},
		{mObtain, []string{"distlock.redlock=false", "distlock.obtain.outcome=not_obtained"}, 1},
		{mHold, []string{"distlock.redlock=false", "distlock.lock.end=released"}, 2},
		{mHold, []string{"distlock.redlock=false", "distlock.lock.end=lost", "distlock.loss.cause=deleted_or_taken_over"}, 1},
		{mHold, []string{"distlock.redlock=false", "distlock.lock.end=lost", "distlock.loss.cause=expired"}, 1},
	}
	for _, tt := range hists {
		if c, _ := m.hist(t, tt.name, attrs(tt.set...)); c != tt.want {
			t.Errorf("%s%v count %d, want %d", tt.name, tt.set, c, tt.want)
		}
	}
	if n := m.points(t, mHold); n != 3 {
		t.Errorf("%s has %d data points, want 3 (released, lost by deletion, lost by expiry)", mHold, n)
	}
	want := map[string]int{"distlock.obtain": 5, "distlock.hold": 4, "distlock.hold/released": 2, "distlock.hold/lost": 2}
	got := r.spanCounts()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("spans %s: %d, want %d (all: %v)", k, got[k], w, got)
		}
	}
}

// Goroutines of two Lockers contend for one key: waiters are woken and
// handed the lock over, and whatever the order, each obtained lock ends
// once, so the held count comes back to 0 and every hold is counted.
func TestHeldNeverDriftsUnderContention(t *testing.T) {
	srv := redistest.Start(t)
	r := newRig(t)
	const lockers, goroutines, cycles = 2, 3, 30
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, lockers*goroutines)
	for range lockers {
		lk := distlock.New(srv.Client(t), distlock.WithObserver(r.obs), distlock.WithTTL(5*time.Second))
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range cycles {
					l, err := lk.Obtain(ctx, "hot", distlock.WithBlocking())
					if err != nil {
						errs <- err
						return
					}
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
	const total = lockers * goroutines * cycles
	m := r.metrics(t)
	if got := m.sum(t, mHeld, attrs("distlock.redlock=false")); got != 0 {
		t.Errorf("held %d after every lock was released, want 0", got)
	}
	if got := m.sum(t, mAttempts, attrs("distlock.redlock=false", "distlock.attempt.outcome=obtained")); got != total {
		t.Errorf("obtained %d, want %d", got, total)
	}
	if got := m.countWhere(t, mHold, "distlock.redlock=false"); got != total {
		t.Errorf("holds ended %d, want %d", got, total)
	}
	released, _ := m.hist(t, mHold, attrs("distlock.redlock=false", "distlock.lock.end=released"))
	handed, _ := m.hist(t, mHold, attrs("distlock.redlock=false", "distlock.lock.end=handed_over"))
	if released+handed != total || handed == 0 {
		t.Errorf("holds released %d, handed over %d: want %d in all, some handed over", released, handed, total)
	}
	if got := m.sumWhere(t, mAttempts, "distlock.attempt.outcome=contended"); got == 0 {
		t.Errorf("no contended attempt among %d goroutines on one key", lockers*goroutines)
	}
	t.Logf("%d holds: %d released, %d handed over; %d contended attempts", total, released, handed,
		m.sumWhere(t, mAttempts, "distlock.attempt.outcome=contended"))
}

// A Redlock over three nodes, one of them down: each node's answer is
// counted per node, and the lock is obtained and released by the quorum.
func TestRedlockEndToEnd(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	clients := make([]redis.UniversalClient, len(srvs))
	for i, s := range srvs {
		clients[i] = s.Client(t)
	}
	srvs[2].Kill(t)
	r := newRig(t)
	rl := distlock.NewRedlock(clients, distlock.WithObserver(r.obs), distlock.WithTTL(5*time.Second))
	ctx := context.Background()
	l, err := rl.Obtain(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	m := r.metrics(t)
	for node, want := range []string{"obtained", "obtained", "error"} {
		n := fmt.Sprint(node)
		if got := m.sumWhere(t, mNodes, "distlock.redlock.node="+n, "distlock.attempt.outcome="+want); got != 1 {
			t.Errorf("node %d: %d attempts %s, want 1", node, got, want)
		}
		if got := m.sumWhere(t, mNodes, "distlock.redlock.node="+n); got != 1 {
			t.Errorf("node %d: %d attempts in all, want 1", node, got)
		}
	}
	if got := m.sum(t, mHeld, attrs("distlock.redlock=true")); got != 0 {
		t.Errorf("Redlock held %d after release, want 0", got)
	}
	if c, _ := m.hist(t, mHold, attrs("distlock.redlock=true", "distlock.lock.end=released")); c != 1 {
		t.Errorf("Redlock holds released: %d, want 1", c)
	}
	if c, _ := m.hist(t, mObtain, attrs("distlock.redlock=true", "distlock.obtain.outcome=obtained")); c != 1 {
		t.Errorf("Redlock obtains: %d, want 1", c)
	}
	for _, s := range r.spans.Ended() {
		if v, _ := spanAttr(s, "distlock.redlock"); !v.AsBool() {
			t.Errorf("span %s without distlock.redlock=true", s.Name())
		}
	}
}
