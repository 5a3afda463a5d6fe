package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// TestSentinelFailover takes a lock through a Sentinel failover client and
// forces a failover (SENTINEL FAILOVER) right after. Replication is
// asynchronous, so the lock may or may not have reached the replica: the
// holder must either keep it (its refreshes succeed on the new primary and
// nobody else gets it) or be told it lost it (Done closes). The test counts
// how often a second client obtains the lock on the new primary, and
// checks that the fenced store refuses every write from a holder whose
// fence is not above the highest it has seen.
//
// With WithReplicas(1, …) (the second run) a lock that Obtain returned has
// reached the replica, so the second client must never get it, and the
// next holder after the old one's release must draw a fence above the old
// holder's.
func TestSentinelFailover(t *testing.T) {
	for _, acked := range []bool{false, true} {
		t.Run(fmt.Sprintf("replicas=%v", acked), func(t *testing.T) { sentinelFailover(t, acked) })
	}
}

func sentinelFailover(t *testing.T, acked bool) {
	trials := trialsFor(1, 5)
	if acked {
		trials = trialsFor(1, 20)
	}
	s := redistest.StartSentinel(t)
	store := redistest.Start(t)
	st := store.Client(t)
	const ttl = 3 * time.Second
	ctx := context.Background()
	var survived, lostReported, grantedTwice, newRefused, staleRefused, fenceNotAbove int
	opts := []distlock.Option{distlock.WithTTL(ttl), distlock.WithFencing(), distlock.WithAutoRefresh()}
	if acked {
		opts = append(opts, distlock.WithReplicas(1, 500*time.Millisecond))
	}
	for i := range trials {
		if i > 0 {
			// The former primary becomes a replica about 10s after a
			// failover; the next one needs it in sync.
			s.WaitReplica(t)
		}
		key := "failover-" + string(rune('a'+i))
		a := distlock.New(s.FailoverClient(t))
		b := distlock.New(s.FailoverClient(t))
		old, err := a.Obtain(ctx, key, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := writeFenced(ctx, st, key, old.Fence()); err != nil || !ok {
			t.Fatalf("first fenced write: ok=%v err=%v", ok, err)
		}
		s.Failover(t)

		// Does a second client get the lock on the new primary?
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cur, err := b.Obtain(octx, key, distlock.WithTTL(ttl), distlock.WithFencing(),
			distlock.WithRetry(distlock.LimitRetry(distlock.LinearBackoff(50*time.Millisecond), 10)))
		cancel()
		switch {
		case err == nil:
			grantedTwice++
			ok, werr := writeFenced(ctx, st, key, cur.Fence())
			if werr != nil {
				t.Fatal(werr)
			}
			if !ok {
				newRefused++ // the fence counter did not make it across either
			} else if ok2, _ := writeFenced(ctx, st, key, old.Fence()); !ok2 {
				staleRefused++
			} else {
				t.Errorf("store accepted the stale holder's fence %d after %d", old.Fence(), cur.Fence())
			}
			_ = cur.Release(ctx)
		case errors.Is(err, distlock.ErrNotObtained):
		default:
			t.Logf("second client: %v", err)
		}

		// The old holder: kept it, or told it lost it, within a TTL.
		select {
		case <-old.Done():
			lostReported++
		case <-time.After(ttl):
			if err := old.Err(); err != nil {
				t.Errorf("Err %v but Done open", err)
			}
			if grantedTwice > 0 && cur != nil {
				t.Errorf("lock granted twice, yet the old holder still believes it holds it")
			}
			survived++
		}
		_ = old.Release(ctx)
		if acked {
			// The fence counter made it across with the lock: the next
			// holder draws a fence above the old holder's.
			next, err := b.Obtain(ctx, key, distlock.WithTTL(ttl), distlock.WithFencing(),
				distlock.WithRetry(distlock.LimitRetry(distlock.LinearBackoff(50*time.Millisecond), 2*int(ttl/(50*time.Millisecond)))))
			if err != nil {
				t.Fatalf("next holder: %v", err)
			}
			if next.Fence() <= old.Fence() {
				fenceNotAbove++
			}
			_ = next.Release(ctx)
		}
	}
	t.Logf("RESULT %s: trials=%d ttl=%v: held across the failover %d, loss reported %d, granted to a second client %d "+
		"(of which the store refused the new holder %d, refused the stale holder %d); next holder's fence not above the old one %d",
		t.Name(), trials, ttl, survived, lostReported, grantedTwice, newRefused, staleRefused, fenceNotAbove)
	if acked && (grantedTwice > 0 || fenceNotAbove > 0) {
		t.Errorf("with WithReplicas: granted twice %d, fence not above %d", grantedTwice, fenceNotAbove)
	}
	if survived+lostReported != trials {
		t.Errorf("every trial must end held or reported lost")
	}
}
