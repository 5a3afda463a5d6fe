package redistest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replicated is a primary and its replicas (plain replication, no
// Sentinel), started by [StartReplicated], for tests of replica
// acknowledgement and of promotions done by hand.
type Replicated struct {
	// Primary is the node clients write to; Replicas replicate it.
	// Promote and Rejoin change who is who.
	Primary  *Server
	Replicas []*Server
	// Former holds the nodes a promotion left behind (the old primary),
	// until Rejoin makes them replicas again.
	Former []*Server
	// Links, from StartReplicatedLinked, are the proxies that Replicas[i]
	// replicates through: Links[i].Stall(true) holds the replication
	// stream back, as a slow network does.
	Links []*Proxy
}

// replicatedTimeout bounds the waits of StartReplicated and Rejoin.
const replicatedTimeout = 15 * time.Second

// StartReplicated starts a primary and n replicas of it (--replicaof, with
// --repl-diskless-sync-delay 0 so a full sync starts at once) and waits
// until every replica is in sync. Everything is stopped in t.Cleanup.
func StartReplicated(t testing.TB, n int) *Replicated {
	t.Helper()
	r := &Replicated{Primary: Start(t, replicationArgs...)}
	for range n {
		r.Replicas = append(r.Replicas, Start(t, slices.Concat(replicationArgs,
			[]string{"--replicaof", loopback, strconv.Itoa(r.Primary.Port())})...))
	}
	r.WaitSync(t)
	return r
}

// StartReplicatedLinked is StartReplicated with each replica replicating
// through its own [Proxy] (Links[i]), so that a test can hold the
// replication stream back while clients still reach every node. Promote
// and Rejoin are not for it: the links lead to the first primary.
func StartReplicatedLinked(t testing.TB, n int) *Replicated {
	t.Helper()
	r := &Replicated{Primary: Start(t, replicationArgs...)}
	for range n {
		link := NewProxy(t, r.Primary.Addr())
		_, port, _ := net.SplitHostPort(link.Addr())
		r.Links = append(r.Links, link)
		r.Replicas = append(r.Replicas, Start(t, slices.Concat(replicationArgs,
			[]string{"--replicaof", loopback, port})...))
	}
	r.WaitSync(t)
	return r
}

// WaitSync waits until every replica reports Primary as its master with the
// replication link up and acknowledges the primary's writes (WAIT), and
// fails the test after 15s.
func (r *Replicated) WaitSync(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(replicatedTimeout)
	for {
		var err error
		for i, rep := range r.Replicas {
			master := r.Primary
			if i < len(r.Links) {
				master = nil // reached through Links[i]
			}
			err = replicaInSync(rep, master)
			if err != nil {
				break
			}
		}
		if err == nil {
			// The link is up; wait until every replica also acknowledges
			// (it may still be loading its first sync).
			err = r.acknowledged()
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: replicas not in sync after %v: %v", replicatedTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// acknowledged checks that every replica acknowledges a write of the
// primary within 1s: a key set and deleted again, then WAIT, on one
// connection (WAIT counts acknowledgements of that connection's writes).
func (r *Replicated) acknowledged() error {
	c := redis.NewClient(&redis.Options{
		Addr:                     r.Primary.Addr(),
		PoolSize:                 1,
		DialTimeout:              2 * time.Second,
		ReadTimeout:              5 * time.Second,
		WriteTimeout:             5 * time.Second,
		MaxRetries:               -1,
		DisableIdentity:          true,
		MaintNotificationsConfig: disabledMaint(),
	})
	defer c.Close()
	ctx := context.Background()
	pipe := c.Pipeline()
	pipe.Set(ctx, "redistest:barrier", "1", 0)
	pipe.Del(ctx, "redistest:barrier")
	wait := pipe.Do(ctx, "wait", len(r.Replicas), 1000)
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if n, _ := wait.Int64(); n < int64(len(r.Replicas)) {
		return fmt.Errorf("%d of %d replicas acknowledged", n, len(r.Replicas))
	}
	return nil
}

// Promote makes Replicas[i] a primary at once (REPLICAOF NO ONE), as a
// failover does, without waiting for anything: what the old primary wrote
// and the replica had not received is lost on the new primary. The old
// primary keeps running as a second primary (it moves to Former) until
// Rejoin; the other replicas keep replicating it until then too.
func (r *Replicated) Promote(t testing.TB, i int) {
	t.Helper()
	next := r.Replicas[i]
	next.Exec(t, "REPLICAOF", "NO", "ONE")
	r.Former = append(r.Former, r.Primary)
	r.Primary = next
	r.Replicas = slices.Delete(r.Replicas, i, i+1)
}

// Rejoin makes every former primary and every replica a replica of the
// current Primary and waits until all are in sync.
func (r *Replicated) Rejoin(t testing.TB) {
	t.Helper()
	r.Replicas = append(r.Replicas, r.Former...)
	r.Former = nil
	for _, rep := range r.Replicas {
		if _, err := rep.do("REPLICAOF", loopback, strconv.Itoa(r.Primary.Port())); err != nil {
			t.Fatalf("redistest: REPLICAOF on %s: %v", rep.Addr(), err)
		}
	}
	r.WaitSync(t)
}

// String names the nodes, for log messages.
func (r *Replicated) String() string {
	s := "primary " + r.Primary.Addr()
	for _, rep := range r.Replicas {
		s += fmt.Sprintf(", replica %s", rep.Addr())
	}
	return s
}
