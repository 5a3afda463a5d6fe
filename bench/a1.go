package main

import (
	"context"
	"fmt"
	"testing"
)

// runA1 measures allocations and bytes per obtain+release cycle with
// testing.Benchmark, one goroutine, interleaved with redislock.
func (b *bench) runA1(ctx context.Context, srv *server) error {
	b.logf("A1: allocations per obtain+release, %d repeats", b.reps)
	cyclers, closeClients := singleNodeCyclers(srv)
	defer closeClients()
	order := []string{subjOurs, subjRedislock, subjOursNoPipe}
	set := b.set("A1")
	for rep := 0; rep < b.reps; rep++ {
		for _, name := range interleave(order, rep) {
			if err := ctx.Err(); err != nil {
				return err
			}
			cycle := cyclers[name](fmt.Sprintf("a1:%d", rep))
			var failed error
			res := testing.Benchmark(func(tb *testing.B) {
				tb.ReportAllocs()
				for i := 0; i < tb.N; i++ {
					if _, err := cycle(ctx); err != nil {
						failed = err
						tb.FailNow()
					}
				}
			})
			if failed != nil || res.N == 0 {
				b.fail("A1 %s: benchmark failed: %v", name, failed)
				continue
			}
			set.add(name, "allocs", float64(res.AllocsPerOp()))
			set.add(name, "bytes", float64(res.AllocedBytesPerOp()))
			set.add(name, "ns", float64(res.NsPerOp()))
			b.logf("  A1 %-40s %4d allocs/cycle %6d B/cycle %8d ns/cycle (N=%d)",
				name, res.AllocsPerOp(), res.AllocedBytesPerOp(), res.NsPerOp(), res.N)
		}
	}
	return nil
}
