package main

import (
	"context"
	"fmt"
	"time"

	"github.com/distlock/distlock"
	"github.com/redis/go-redis/v9"
)

// U1R subjects: distlock on a primary that has one replica, without and
// with replica acknowledgement.
const (
	u1rTimeout           = 100 * time.Millisecond
	subjOursOnReplicated = "distlock (primary with a replica)"
)

var subjOursReplicas = fmt.Sprintf("distlock WithReplicas(1, %v)", u1rTimeout)

// runU1R measures uncontended obtain+release on a primary with one replica
// (replica made a replica of primary for the row, and a primary again
// after it), at 1 and 50 goroutines: the plain lock against the lock with
// WithReplicas(1, 100ms), whose every acquisition waits for the replica's
// acknowledgement in the same round trip.
func (b *bench) runU1R(ctx context.Context, primary, replica *server) error {
	b.logf("U1R: uncontended obtain+release on a primary with one replica, %d repeats of %v", b.reps, b.window)
	rc := newClient(replica)
	defer rc.Close()
	if err := rc.Do(ctx, "replicaof", loopback, primary.port).Err(); err != nil {
		return fmt.Errorf("U1R: replicaof: %w", err)
	}
	defer rc.Do(context.WithoutCancel(ctx), "replicaof", "no", "one")
	if err := waitLinkUp(ctx, rc, 15*time.Second); err != nil {
		return fmt.Errorf("U1R: %w", err)
	}
	plain, repl := newClient(primary), newClient(primary)
	defer plain.Close()
	defer repl.Close()
	cyclers := map[string]cycler{
		subjOursOnReplicated: oursCycler(distlock.New(plain, distlock.WithTTL(lockTTL))),
		subjOursReplicas:     oursCycler(distlock.New(repl, distlock.WithTTL(lockTTL), distlock.WithReplicas(1, u1rTimeout))),
	}
	order := []string{subjOursOnReplicated, subjOursReplicas}
	for _, g := range []int{1, 50} {
		set := b.set(fmt.Sprintf("U1R/%d", g))
		for _, name := range order {
			if r := runCycles(ctx, cyclers[name], "u1rwarm:"+name, g, b.warmup, false); r.errs > 0 {
				return fmt.Errorf("U1R warm-up %s: %w", name, r.firstErr)
			}
		}
		for rep := 0; rep < b.reps; rep++ {
			for _, name := range interleave(order, rep) {
				if err := ctx.Err(); err != nil {
					return err
				}
				r := runCycles(ctx, cyclers[name], fmt.Sprintf("u1r:%d:%d", g, rep), g, b.window, false)
				if r.errs > 0 {
					b.fail("U1R %s, %d goroutines: %d errors, first: %v", name, g, r.errs, r.firstErr)
				}
				if r.cycles == 0 {
					b.fail("U1R %s, %d goroutines: no cycle completed", name, g)
					continue
				}
				set.add(name, "rate", r.rate())
				b.logf("  U1R %2d goroutines  %-40s %9.0f cycles/s", g, name, r.rate())
			}
		}
	}
	return nil
}

// waitLinkUp waits until the replica behind c reports its replication link
// up.
func waitLinkUp(ctx context.Context, c *redis.Client, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && infoField(info, "master_link_status") == "up" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica link not up after %v (last error: %v)", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
