package main

import (
	"context"
	"fmt"

	"github.com/go-redsync/redsync/v4"
	"github.com/redis/go-redis/v9"
)

// Redlock subjects.
const (
	subjOursRedlock = "distlock Redlock"
	subjRedsync     = "redsync"
)

// rlGoroutines is the concurrency of rows R3 and R5.
const rlGoroutines = 50

// runRedlock measures uncontended Redlock obtain+release over n nodes at 50
// goroutines: cycles/s and obtain latency, against redsync.
func (b *bench) runRedlock(ctx context.Context, nodes []*server, n int) error {
	id := fmt.Sprintf("R%d", n)
	set := b.set(id)
	ourClients := make([]*redis.Client, n)
	peerClients := make([]*redis.Client, n)
	for i := 0; i < n; i++ {
		ourClients[i] = newClient(nodes[i])
		peerClients[i] = newClient(nodes[i])
		defer ourClients[i].Close()
		defer peerClients[i].Close()
	}
	cyclers := map[string]cycler{
		subjOursRedlock: oursRedlockCycler(ourClients),
		subjRedsync:     redsyncCycler(redsync.New(redsyncPools(peerClients)...)),
	}
	order := []string{subjOursRedlock, subjRedsync}
	b.logf("%s: Redlock over %d nodes, %d goroutines, %d repeats of %v", id, n, rlGoroutines, b.reps, b.window)
	for _, name := range order {
		if r := runCycles(ctx, cyclers[name], "warm:"+name, rlGoroutines, b.warmup, false); r.errs > 0 {
			return fmt.Errorf("%s warm-up %s: %w", id, name, r.firstErr)
		}
	}
	for rep := 0; rep < b.reps; rep++ {
		for _, name := range interleave(order, rep) {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := runCycles(ctx, cyclers[name], fmt.Sprintf("r%d:%d", n, rep), rlGoroutines, b.window, true)
			if r.errs > 0 {
				b.fail("%s %s: %d errors, first: %v", id, name, r.errs, r.firstErr)
			}
			if r.cycles == 0 {
				b.fail("%s %s: no cycle completed", id, name)
				continue
			}
			p50, p99 := percentile(r.lat, 50), percentile(r.lat, 99)
			set.add(name, "rate", r.rate())
			set.add(name, "timeouts", float64(r.timeouts))
			set.add(name, "p50", ms(p50))
			set.add(name, "p99", ms(p99))
			b.logf("  %s %-20s %9.0f cycles/s  obtain p50 %.3f ms p99 %.3f ms  timeouts %d", id, name, r.rate(), ms(p50), ms(p99), r.timeouts)
		}
	}
	return nil
}
