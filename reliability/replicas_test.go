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

// TestPromotionTrials takes a lock on a primary with one replica, promotes
// the replica at once (REPLICAOF NO ONE, as a failover without Sentinel
// does) and lets a second client try the lock on the new primary. Two
// scenarios: a healthy replica, and a lagging one (its replication stream
// held back by a stalled proxy while the lock is written, so the promoted
// replica never saw it). Each runs without and with WithReplicas(1, …).
//
// With WithReplicas the lock must never be granted twice, and the first
// holder on the new primary must draw a fence above the old holder's: an
// Obtain that returned had its lock and fence acknowledged by the replica
// that was promoted, and an Obtain whose lock was not acknowledged failed
// instead (counted as refused). Without the option the test counts.
func TestPromotionTrials(t *testing.T) {
	trials := trialsFor(3, 20)
	const ttl = time.Second
	for _, lagging := range []bool{false, true} {
		for _, acked := range []bool{false, true} {
			t.Run(fmt.Sprintf("lagging=%v/replicas=%v", lagging, acked), func(t *testing.T) {
				opts := []distlock.Option{distlock.WithTTL(ttl), distlock.WithFencing()}
				if acked {
					opts = append(opts, distlock.WithReplicas(1, 200*time.Millisecond))
				}
				var c promotionCounts
				var rs *redistest.Replicated
				for i := range trials {
					if lagging {
						rs = redistest.StartReplicatedLinked(t, 1)
						rs.Links[0].Stall(true)
					} else if rs == nil {
						rs = redistest.StartReplicated(t, 1)
					}
					c.trial(t, rs, fmt.Sprintf("promote-%d", i), ttl, acked, opts)
					if lagging {
						rs.Links[0].Stall(false)
					} else {
						rs.Rejoin(t)
					}
				}
				t.Logf("RESULT %s: trials=%d ttl=%v: obtained %d, refused for want of acknowledgement %d, "+
					"granted twice %d, first new holder's fence not above the old one %d",
					t.Name(), trials, ttl, c.granted, c.refused, c.twice, c.fenceNotAbove)
				if acked && (c.twice > 0 || c.fenceNotAbove > 0) {
					t.Errorf("with WithReplicas: %d double grants, %d fences not above the old holder's", c.twice, c.fenceNotAbove)
				}
				if c.granted+c.refused != trials {
					t.Errorf("every trial must end obtained or refused")
				}
			})
		}
	}
}

// promotionCounts are the outcomes of TestPromotionTrials's trials.
type promotionCounts struct {
	granted, refused, twice, fenceNotAbove int
}

// countFirst counts the outcome of the first holder's Obtain: granted, or
// (with WithReplicas) refused for want of acknowledgement.
func (c *promotionCounts) countFirst(t *testing.T, key string, acked bool, err error) {
	t.Helper()
	switch {
	case err == nil:
		c.granted++
	case acked && errors.Is(err, distlock.ErrNotReplicated):
		c.refused++
	default:
		t.Fatalf("%s: obtain: %v", key, err)
	}
}

// countNext takes the lock with b after the failover: at once if the old
// lock (old, nil when refused) did not make it across, which counts as
// granted twice; else once the old lock is gone (released first with
// releaseOld, otherwise expired). It counts a first new holder whose fence
// is not above the old holder's.
func (c *promotionCounts) countNext(t *testing.T, b *distlock.Locker, key string, ttl time.Duration, old *distlock.Lock, releaseOld bool) {
	t.Helper()
	ctx := context.Background()
	next, err := b.Obtain(ctx, key, distlock.WithTTL(ttl), distlock.WithFencing())
	switch {
	case err == nil:
		if old != nil {
			if !time.Now().Before(old.ValidUntil()) {
				t.Fatalf("%s: the old lock's validity ran out during the failover: make the TTL longer", key)
			}
			c.twice++
		}
	case !errors.Is(err, distlock.ErrNotObtained):
		t.Fatalf("%s: second client: %v", key, err)
	case old != nil:
		if releaseOld {
			if err := old.Release(ctx); err != nil {
				t.Fatalf("%s: release on the new master: %v", key, err)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 3*ttl)
		next, err = b.Obtain(wctx, key, distlock.WithTTL(ttl), distlock.WithFencing(), distlock.WithBlocking())
		cancel()
		if err != nil {
			t.Fatalf("%s: next holder: %v", key, err)
		}
	}
	if old != nil && next.Fence() <= old.Fence() {
		c.fenceNotAbove++
	}
	if next != nil {
		_ = next.Release(ctx)
	}
}

// trial obtains key on rs's primary with opts, promotes Replicas[0] at once
// and takes the lock on the new primary: at once if the lock did not make
// it across, else once it expired there.
func (c *promotionCounts) trial(t *testing.T, rs *redistest.Replicated, key string, ttl time.Duration, acked bool, opts []distlock.Option) {
	t.Helper()
	ctx := context.Background()
	old, err := distlock.New(rs.Primary.Client(t)).Obtain(ctx, key, opts...)
	c.countFirst(t, key, acked, err)
	rs.Promote(t, 0)

	c.countNext(t, distlock.New(rs.Primary.Client(t)), key, ttl, old, false)
}

// TestClusterFailoverTrials: a 3-master Redis Cluster with one replica per
// master. A lock is taken, then the key's replica is promoted at once with
// CLUSTER FAILOVER (a manual failover: the replica first catches up with
// its master), and a second client tries the lock; without and with
// WithReplicas(1, …). With
// WithReplicas: never granted twice, and the first new holder's fence is
// above the old holder's.
func TestClusterFailoverTrials(t *testing.T) {
	trials := trialsFor(1, 20)
	// Long against a failover (the wait includes the old master's resync,
	// and a manual failover asked again when it timed out), so that the
	// lock does not simply expire meanwhile; the old holder releases it
	// before the next holder takes it, so nobody waits for that TTL.
	const ttl = 30 * time.Second
	cl := redistest.StartClusterWithReplicas(t, 3)
	for _, acked := range []bool{false, true} {
		t.Run(fmt.Sprintf("replicas=%v", acked), func(t *testing.T) {
			opts := []distlock.Option{distlock.WithTTL(ttl), distlock.WithFencing()}
			if acked {
				opts = append(opts, distlock.WithReplicas(1, 200*time.Millisecond))
			}
			var c promotionCounts
			for i := range trials {
				c.clusterTrial(t, cl, fmt.Sprintf("cf-%v-%d", acked, i), ttl, acked, opts)
			}
			t.Logf("RESULT %s: trials=%d ttl=%v: obtained %d, refused for want of acknowledgement %d, "+
				"granted twice %d, first new holder's fence not above the old one %d",
				t.Name(), trials, ttl, c.granted, c.refused, c.twice, c.fenceNotAbove)
			if acked && (c.twice > 0 || c.fenceNotAbove > 0) {
				t.Errorf("with WithReplicas: %d double grants, %d fences not above the old holder's", c.twice, c.fenceNotAbove)
			}
		})
	}
}

// clusterTrial is one trial of TestClusterFailoverTrials.
func (c *promotionCounts) clusterTrial(t *testing.T, cl *redistest.Cluster, key string, ttl time.Duration, acked bool, opts []distlock.Option) {
	t.Helper()
	ctx := context.Background()
	cc := cl.Client(t)
	old, err := distlock.New(cc).Obtain(ctx, key, opts...)
	c.countFirst(t, key, acked, err)
	node, err := cc.MasterForKey(ctx, "distlock:{"+key+"}")
	if err != nil {
		t.Fatal(err)
	}
	idx := -1
	for i, n := range cl.Nodes {
		if n.Addr() == node.Options().Addr {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("%s: no master %s", key, node.Options().Addr)
	}
	cl.Failover(t, idx, false)

	// The old holder's client follows the slot to the new master, so it
	// can release there before the next holder waits.
	c.countNext(t, distlock.New(cl.Client(t)), key, ttl, old, true)
}
