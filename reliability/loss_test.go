package reliability_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// trialsFor returns n, or soak in a soak run.
func trialsFor(n, soak int) int {
	if soaking() {
		return soak
	}
	return n
}

// durations summarises measured times.
type durations []time.Duration

func (d durations) summary() (lo, med, hi time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

// lossDetection measures, over trials, the time from the moment the lock
// is taken over (its key deleted behind the holder's back and another
// holder obtaining it) to the old, auto-refreshed holder's Done closing.
func lossDetection(t *testing.T, svc *lockService, del func(key string), trials int, ttl time.Duration) durations {
	t.Helper()
	ctx := context.Background()
	var got durations
	for i := range trials {
		key := "loss-" + string(rune('a'+i%26)) + time.Now().Format("150405.000000")
		old, err := svc.obtain(ctx, key, distlock.WithTTL(ttl), distlock.WithAutoRefresh())
		if err != nil {
			t.Fatal(err)
		}
		del(key)
		cur, err := svc.obtain(ctx, key, distlock.WithTTL(10*time.Second))
		if err != nil {
			t.Fatalf("take over: %v", err)
		}
		takenOver := time.Now()
		select {
		case <-old.Done():
			got = append(got, time.Since(takenOver))
		case <-time.After(5 * ttl):
			t.Fatalf("old holder's Done still open %v after the takeover", 5*ttl)
		}
		if err := old.Err(); err == nil {
			t.Errorf("old holder's Err is nil after Done closed")
		}
		if d := got[len(got)-1]; d > ttl {
			t.Errorf("loss noticed after %v, beyond the TTL %v", d, ttl)
		}
		if err := cur.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	lo, med, hi := got.summary()
	t.Logf("RESULT %s: trials=%d ttl=%v refresh every %v: takeover -> old Done closed: min %v, median %v, max %v",
		t.Name(), trials, ttl, ttl/3, lo.Round(time.Millisecond/10), med.Round(time.Millisecond/10), hi.Round(time.Millisecond/10))
	return got
}

func TestLossDetectionSingleNode(t *testing.T) {
	srv := redistest.Start(t)
	svc, err := newLockService(modeSingle, []string{srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	lossDetection(t, svc, func(key string) { srv.Exec(t, "DEL", lockKeyOf(key)) }, trialsFor(8, 100), 900*time.Millisecond)
}

func TestLossDetectionRedlock(t *testing.T) {
	nodes := redistest.StartN(t, 5)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	svc, err := newLockService(modeRedlock, addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	lossDetection(t, svc, func(key string) {
		for _, n := range nodes {
			n.Exec(t, "DEL", lockKeyOf(key))
		}
	}, trialsFor(8, 100), 900*time.Millisecond)
}

// TestRestartWithoutPersistence: a single node restarted without
// persistence forgets its locks. The guarantee does not hold here; the
// test measures how often a second holder gets the lock, how fast the
// first one learns of the loss, and what fencing does — the restart also
// resets the fence counter, so the new holder's fence is not above the old
// one and the store refuses the new holder (not the old one).
func TestRestartWithoutPersistence(t *testing.T) {
	srv := redistest.Start(t)
	store := redistest.Start(t)
	st := store.Client(t)
	ctx := context.Background()
	const ttl = 900 * time.Millisecond
	trials := trialsFor(3, 20)
	var lost, reset, newRefused, oldHighest int
	var detect durations
	for range trials {
		store.Exec(t, "FLUSHALL")
		svc, err := newLockService(modeSingle, []string{srv.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		// Raise the fence counter so that the reset is visible.
		for range 3 {
			l, err := svc.obtain(ctx, "restart", distlock.WithTTL(ttl), distlock.WithFencing())
			if err != nil {
				t.Fatal(err)
			}
			_ = l.Release(ctx)
		}
		old, err := svc.obtain(ctx, "restart", distlock.WithTTL(ttl), distlock.WithFencing(), distlock.WithAutoRefresh())
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := writeFenced(ctx, st, "restart", old.Fence()); err != nil || !ok {
			t.Fatalf("old holder's first write: ok=%v err=%v", ok, err)
		}
		srv.Restart(t)
		restarted := time.Now()
		cur, err := svc.obtain(ctx, "restart", distlock.WithTTL(10*time.Second), distlock.WithFencing(),
			distlock.WithRetry(distlock.LimitRetry(distlock.LinearBackoff(20*time.Millisecond), 50)))
		if err == nil {
			lost++
			if cur.Fence() <= old.Fence() {
				reset++
			}
			if ok, err := writeFenced(ctx, st, "restart", cur.Fence()); err == nil && !ok {
				newRefused++
			}
			// The store's highest fence is still the old holder's.
			if hi, _ := st.Get(ctx, storeFenceKey("restart")).Int64(); hi == old.Fence() {
				oldHighest++
			}
		}
		select {
		case <-old.Done():
			detect = append(detect, time.Since(restarted))
		case <-time.After(5 * ttl):
			t.Fatalf("old holder's Done still open %v after the restart", 5*ttl)
		}
		if cur != nil {
			_ = cur.Release(ctx)
		}
		svc.close()
	}
	lo, med, hi := detect.summary()
	t.Logf("RESULT %s: trials=%d ttl=%v: lock granted twice %d/%d, fence counter reset (new fence <= old) %d/%d, "+
		"new holder refused by the store %d/%d, store's highest fence still the old holder's %d/%d; restart -> old Done closed: min %v, median %v, max %v",
		t.Name(), trials, ttl, lost, trials, reset, trials, newRefused, trials, oldHighest, trials,
		lo.Round(time.Millisecond), med.Round(time.Millisecond), hi.Round(time.Millisecond))
	if lost != trials {
		t.Errorf("after a restart without persistence the lock should be free: granted again %d/%d", lost, trials)
	}
}
