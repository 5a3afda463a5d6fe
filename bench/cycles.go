package main

import (
	"context"
	"errors"
	"net"
	"os"

	"fmt"
	"github.com/distlock/distlock"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// cycleResult is one timed run of uncontended obtain+release cycles.
type cycleResult struct {
	cycles   int64
	elapsed  time.Duration
	lat      []time.Duration // obtain latencies, sorted (when asked for)
	errs     int64           // errors other than timeouts: the run fails
	timeouts int64           // calls that timed out (node or client timeouts)
	firstErr error
}

func (r cycleResult) rate() float64 { return float64(r.cycles) / r.elapsed.Seconds() }

// runCycles runs g goroutines, each cycling its own key (prefix + index)
// until dur has passed, and counts the completed cycles. An error stops the
// goroutine that saw it and is counted.
func runCycles(ctx context.Context, c cycler, prefix string, g int, dur time.Duration, wantLat bool) cycleResult {
	fns := make([]cycleFunc, g)
	for i := range fns {
		fns[i] = c(fmt.Sprintf("%s:%d", prefix, i))
	}
	var (
		stop     atomic.Bool
		total    atomic.Int64
		errs     atomic.Int64
		timeouts atomic.Int64
		mu       sync.Mutex
		first    error
		lats     = make([][]time.Duration, g)
		wg       sync.WaitGroup
		ready    sync.WaitGroup
		starts   = make(chan struct{})
	)
	ready.Add(g)
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n int64
			var lat []time.Duration
			if wantLat {
				lat = make([]time.Duration, 0, 4096)
			}
			ready.Done()
			<-starts
			gen := 0
			for !stop.Load() {
				d, err := fns[i](ctx)
				if err != nil && isTimeout(err) && ctx.Err() == nil {
					// An overloaded machine, not a broken library: count
					// it and go on with a fresh key, since a lock whose
					// release timed out may still be held.
					timeouts.Add(1)
					gen++
					fns[i] = c(fmt.Sprintf("%s:%d:%d", prefix, i, gen))
					continue
				}
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					break
				}
				n++
				if wantLat {
					lat = append(lat, d)
				}
			}
			total.Add(n)
			lats[i] = lat
		}()
	}
	ready.Wait()
	start := time.Now()
	close(starts)
	timer := time.NewTimer(dur)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true)
	wg.Wait()
	r := cycleResult{cycles: total.Load(), elapsed: time.Since(start), errs: errs.Load(), timeouts: timeouts.Load(), firstErr: first}
	if wantLat {
		for _, l := range lats {
			r.lat = append(r.lat, l...)
		}
		slices.Sort(r.lat)
	}
	return r
}

// isTimeout reports whether err is a timeout of the client or of a Redlock
// node, as an overloaded machine produces, rather than a wrong answer.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, distlock.ErrNodeTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
