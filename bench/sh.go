package main

import (
	"context"
	"fmt"
	"time"

	"github.com/distlock/distlock"
)

// SH subjects: shared leases against the plain lock, at 50 goroutines.
const (
	shGoroutines   = 50
	shContendedN   = 10
	subjOursRead   = "distlock WithShared, one key"
	subjOursPermit = "distlock WithLimit(50), one key"
)

var subjOursSemWait = fmt.Sprintf("distlock WithLimit(%d) WithBlocking, one key", shContendedN)

// sharedCycler cycles shared leases of one key (every goroutine's cycle
// uses key, not its own) with opts.
func sharedCycler(lk *distlock.Locker, key string, opts ...distlock.Option) cycler {
	return func(string) cycleFunc {
		return func(ctx context.Context) (time.Duration, error) {
			start := time.Now()
			l, err := lk.Obtain(ctx, key, opts...)
			d := time.Since(start)
			if err != nil {
				return d, err
			}
			return d, l.Release(ctx)
		}
	}
}

// runSH measures obtain+release cycles/s at 50 goroutines of a read lock
// (WithShared) and a semaphore permit on one key, against the plain lock on
// distinct keys (U1's cycle): a semaphore with room for all (WithLimit(50):
// every attempt succeeds) and one that 50 goroutines share 10 permits of
// (WithLimit(10) WithBlocking: a release wakes the waiters).
func (b *bench) runSH(ctx context.Context, srv *server) error {
	b.logf("SH: shared leases, %d goroutines, %d repeats of %v", shGoroutines, b.reps, b.window)
	plain, shared := newClient(srv), newClient(srv)
	defer plain.Close()
	defer shared.Close()
	lk := distlock.New(shared, distlock.WithTTL(lockTTL))
	cyclers := map[string]cycler{
		subjOurs:        oursCycler(distlock.New(plain, distlock.WithTTL(lockTTL))),
		subjOursRead:    sharedCycler(lk, "sh:read", distlock.WithShared()),
		subjOursPermit:  sharedCycler(lk, "sh:permit", distlock.WithLimit(shGoroutines)),
		subjOursSemWait: sharedCycler(lk, "sh:sem", distlock.WithLimit(shContendedN), distlock.WithBlocking()),
	}
	order := []string{subjOurs, subjOursRead, subjOursPermit, subjOursSemWait}
	set := b.set(fmt.Sprintf("SH/%d", shGoroutines))
	for _, name := range order {
		if r := runCycles(ctx, cyclers[name], "shwarm:"+name, shGoroutines, b.warmup, false); r.errs > 0 {
			return fmt.Errorf("SH warm-up %s: %w", name, r.firstErr)
		}
	}
	for rep := 0; rep < b.reps; rep++ {
		for _, name := range interleave(order, rep) {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := runCycles(ctx, cyclers[name], fmt.Sprintf("sh:%d", rep), shGoroutines, b.window, false)
			if r.errs > 0 {
				b.fail("SH %s: %d errors, first: %v", name, r.errs, r.firstErr)
			}
			if r.cycles == 0 {
				b.fail("SH %s: no cycle completed", name)
				continue
			}
			set.add(name, "rate", r.rate())
			b.logf("  SH %2d goroutines  %-45s %9.0f cycles/s", shGoroutines, name, r.rate())
		}
	}
	return nil
}
