package main

import (
	"context"
	"fmt"
	"time"

	"github.com/distlock/distlock"
)

// M2 subjects: distlock's multi-key lock of two keys against its plain
// lock of one (taken with SET NX PX, no script), and against one taken by
// a script (WithFencing), on one node.
const (
	subjOursPlainOne  = "distlock Obtain (1 key)"
	subjOursFencedOne = "distlock Obtain WithFencing (1 key, script)"
	subjOursMultiTwo  = "distlock ObtainMulti (2 keys)"
)

// multiCycler cycles uncontended multi-key locks of two keys (key:a and
// key:b) with a distlock Locker.
func multiCycler(lk *distlock.Locker) cycler {
	return func(key string) cycleFunc {
		keys := []string{key + ":a", key + ":b"}
		return func(ctx context.Context) (time.Duration, error) {
			start := time.Now()
			l, err := lk.ObtainMulti(ctx, keys)
			d := time.Since(start)
			if err != nil {
				return d, err
			}
			return d, l.Release(ctx)
		}
	}
}

// runM2 measures uncontended obtain+release at 50 goroutines, each on keys
// of its own: ObtainMulti of two keys (one script takes both, one releases
// both) against Obtain of one, plain and with WithFencing, interleaved.
func (b *bench) runM2(ctx context.Context, srv *server) error {
	b.logf("M2: uncontended ObtainMulti of 2 keys against Obtain of 1, %d repeats of %v", b.reps, b.window)
	plain, fenced, multi := newClient(srv), newClient(srv), newClient(srv)
	defer plain.Close()
	defer fenced.Close()
	defer multi.Close()
	cyclers := map[string]cycler{
		subjOursPlainOne:  oursCycler(distlock.New(plain, distlock.WithTTL(lockTTL))),
		subjOursFencedOne: oursCycler(distlock.New(fenced, distlock.WithTTL(lockTTL), distlock.WithFencing())),
		subjOursMultiTwo:  multiCycler(distlock.New(multi, distlock.WithTTL(lockTTL))),
	}
	order := []string{subjOursPlainOne, subjOursFencedOne, subjOursMultiTwo}
	const g = m2Goroutines
	set := b.set("M2")
	for _, name := range order {
		if r := runCycles(ctx, cyclers[name], "m2warm:"+name, g, b.warmup, false); r.errs > 0 {
			return fmt.Errorf("M2 warm-up %s: %w", name, r.firstErr)
		}
	}
	for rep := 0; rep < b.reps; rep++ {
		for _, name := range interleave(order, rep) {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := runCycles(ctx, cyclers[name], fmt.Sprintf("m2:%d", rep), g, b.window, false)
			if r.errs > 0 {
				b.fail("M2 %s: %d errors, first: %v", name, r.errs, r.firstErr)
			}
			if r.cycles == 0 {
				b.fail("M2 %s: no cycle completed", name)
				continue
			}
			set.add(name, "rate", r.rate())
			b.logf("  M2 %2d goroutines  %-40s %9.0f cycles/s", g, name, r.rate())
		}
	}
	return nil
}

// m2Goroutines is M2's concurrency.
const m2Goroutines = 50
