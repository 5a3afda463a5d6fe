package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/distlock/distlock"
	"github.com/go-redsync/redsync/v4"
	"github.com/redis/go-redis/v9"
)

// c1Hold is how long a holder stays in the critical section in C1 and C16.
const c1Hold = 200 * time.Microsecond

// c1Shape is the shape of a contention row: lockers on separate clients
// (stand-ins for processes) × goroutines each, all on one key.
type c1Shape struct {
	id         string
	lockers    int
	goroutines int
}

// The contention rows: C1 (4 processes × 4 goroutines: in-process
// coalescing and hand-over carry most hand-offs) and C16 (16 processes × 1
// goroutine: the usual deployment, one caller per replica, where every
// hand-off crosses processes).
var (
	c1Shape4x4  = c1Shape{id: "C1", lockers: 4, goroutines: 4}
	c1Shape16x1 = c1Shape{id: "C16", lockers: 16, goroutines: 1}
)

// C1 subjects.
const (
	subjRedislock1  = "redislock LinearBackoff(1ms)"
	subjRedislock10 = "redislock LinearBackoff(10ms)"
	subjRedsyncC1   = "redsync (default retry delay)"
	// Blocked callers that barge instead of waiting their turn (the
	// default).
	subjOursBarging = "distlock WithFairness(false)"
)

// c1Subject is one library in C1: P contenders on P clients, and a counter
// of the commands those clients sent.
type c1Subject struct {
	name       string
	lockers    []contender
	goroutines int // per locker
	sent       *atomic.Int64
}

// runC1 measures contention on one key in the given shape: critical
// sections/s, hand-off latency, commands per critical section, the longest
// wait, and mutual exclusion.
func (b *bench) runC1(ctx context.Context, srv *server, shape c1Shape) error {
	b.logf("%s: %d lockers × %d goroutines on one key, hold %v, %d repeats of %v",
		shape.id, shape.lockers, shape.goroutines, c1Hold, b.reps, b.c1Window)
	var clients []*redis.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	mk := func(name string, mkLocker func(c *redis.Client) contender) c1Subject {
		s := c1Subject{name: name, sent: new(atomic.Int64), goroutines: shape.goroutines}
		for i := 0; i < shape.lockers; i++ {
			c := redis.NewClient(&redis.Options{Addr: srv.addr(), Dialer: countingDialer(s.sent)})
			clients = append(clients, c)
			s.lockers = append(s.lockers, mkLocker(c))
		}
		return s
	}
	subjects := []c1Subject{
		mk(subjOurs, func(c *redis.Client) contender {
			return oursContender(distlock.New(c, distlock.WithTTL(lockTTL)))
		}),
		mk(subjOursNoPipe, func(c *redis.Client) contender {
			return oursContender(distlock.New(c, distlock.WithTTL(lockTTL), distlock.WithPipelining(false)))
		}),
		mk(subjOursBarging, func(c *redis.Client) contender {
			return oursContender(distlock.New(c, distlock.WithTTL(lockTTL), distlock.WithFairness(false)))
		}),
		mk(subjRedislock1, func(c *redis.Client) contender {
			return redislockContender(redislock.New(c), time.Millisecond)
		}),
		mk(subjRedislock10, func(c *redis.Client) contender {
			return redislockContender(redislock.New(c), 10*time.Millisecond)
		}),
		mk(subjRedsyncC1, func(c *redis.Client) contender {
			return redsyncContender(redsync.New(redsyncPools([]*redis.Client{c})...))
		}),
	}
	if shape != c1Shape4x4 {
		// The other shapes compare with the fastest peer only, to keep the
		// run short.
		subjects = subjects[:4]
	}
	set := b.set(shape.id)
	names := make([]string, len(subjects))
	byName := make(map[string]c1Subject)
	for i, s := range subjects {
		names[i] = s.name
		byName[s.name] = s
		if _, err := b.contend(ctx, s, shape.id+"warm:"+s.name, b.warmup); err != nil {
			return fmt.Errorf("%s warm-up %s: %w", shape.id, s.name, err)
		}
	}
	for rep := 0; rep < b.reps; rep++ {
		for _, name := range interleave(names, rep) {
			if err := ctx.Err(); err != nil {
				return err
			}
			s := byName[name]
			r, err := b.contend(ctx, s, fmt.Sprintf("%s:%d", shape.id, rep), b.c1Window)
			if err != nil {
				return fmt.Errorf("%s %s: %w", shape.id, name, err)
			}
			if r.violations > 0 {
				b.fail("%s %s: %d mutual-exclusion violations", shape.id, name, r.violations)
			}
			if r.errs > 0 {
				b.fail("%s %s: %d errors, first: %v", shape.id, name, r.errs, r.firstErr)
			}
			if r.sections == 0 {
				b.fail("%s %s: no critical section completed", shape.id, name)
				continue
			}
			cs := float64(r.sections)
			set.add(name, "rate", cs/r.elapsed.Seconds())
			set.add(name, "p50", ms(percentile(r.handoffs, 50)))
			set.add(name, "p99", ms(percentile(r.handoffs, 99)))
			set.add(name, "sent", float64(r.sent)/cs)
			set.add(name, "executed", float64(r.executed)/cs)
			set.add(name, "maxwait", ms(r.maxWait))
			set.add(name, "wait50", ms(percentile(r.waits, 50)))
			set.add(name, "wait99", ms(percentile(r.waits, 99)))
			set.add(name, "violations", float64(r.violations))
			set.add(name, "hold", ms(r.meanHold))
			set.add(name, "reacquired", 100*float64(r.reacquired)/cs)
			b.logf("  %-3s %-32s %6.0f CS/s  hand-off p50 %7.3f ms p99 %7.3f ms  %5.1f cmds sent/CS (%5.1f executed)  wait p99 %7.1f ms longest %7.1f ms  re-acquired %4.1f%%  violations %d",
				shape.id, name, cs/r.elapsed.Seconds(), ms(percentile(r.handoffs, 50)), ms(percentile(r.handoffs, 99)),
				float64(r.sent)/cs, float64(r.executed)/cs, ms(percentile(r.waits, 99)), ms(r.maxWait), 100*float64(r.reacquired)/cs, r.violations)
		}
	}
	return nil
}

// c1Result is one timed C1 run of one subject.
type c1Result struct {
	sections   int64
	elapsed    time.Duration
	handoffs   []time.Duration // sorted
	waits      []time.Duration // Obtain call to return, sorted
	sent       int64           // commands the clients sent
	executed   int64           // commands Redis executed (incl. inside scripts)
	maxWait    time.Duration
	violations int64
	reacquired int64 // critical sections taken straight back by the goroutine that had just released
	meanHold   time.Duration
	errs       int64
	firstErr   error
}

// contend runs one C1 window of subject s on a fresh key (a waiter cancelled
// at the end may leave a lock behind for its TTL).
func (b *bench) contend(ctx context.Context, s c1Subject, key string, window time.Duration) (c1Result, error) {
	g := len(s.lockers) * s.goroutines
	obtains := make([]obtainFunc, g)
	for i := range obtains {
		obtains[i] = s.lockers[i%len(s.lockers)](key)
	}
	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) + 1 } // never 0

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		stop       atomic.Bool
		holder     atomic.Int32 // 1 while someone is in the critical section
		relMu      sync.Mutex   // guards relAt and relBy
		relAt      int64        // when the last holder called Release
		relBy      = -1         // which goroutine that was; -1 once another took over
		reacquired atomic.Int64
		sections   atomic.Int64
		violations atomic.Int64
		holdTotal  atomic.Int64
		errs       atomic.Int64
		mu         sync.Mutex
		firstErr   error
		waitStart  = make([]atomic.Int64, g) // when a goroutine's current wait began, 0 when not waiting
		maxWaits   = make([]time.Duration, g)
		handoffs   = make([][]time.Duration, g)
		waits      = make([][]time.Duration, g)
		wg         sync.WaitGroup
		ready      sync.WaitGroup
		starts     = make(chan struct{})
	)
	fail := func(err error) {
		errs.Add(1)
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	ready.Add(g)
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ho := make([]time.Duration, 0, 1024)
			wt := make([]time.Duration, 0, 1024)
			var maxWait time.Duration
			defer func() {
				handoffs[i] = ho
				waits[i] = wt
				maxWaits[i] = maxWait
			}()
			ready.Done()
			<-starts
			for !stop.Load() {
				t0 := now()
				waitStart[i].Store(t0)
				release, err := obtains[i](wctx)
				t1 := now()
				waitStart[i].Store(0)
				if err != nil {
					if wctx.Err() == nil {
						fail(err)
					}
					return
				}
				maxWait = max(maxWait, time.Duration(t1-t0))
				wt = append(wt, time.Duration(t1-t0))
				if !holder.CompareAndSwap(0, 1) {
					violations.Add(1)
				}
				// A hand-off is the lock passing to another goroutine; a
				// holder that takes the lock straight back (a poller that
				// barges in before the waiters) is counted apart.
				relMu.Lock()
				switch relBy {
				case -1:
				case i:
					reacquired.Add(1)
				default:
					ho = append(ho, time.Duration(t1-relAt))
				}
				relBy = -1
				relMu.Unlock()
				sleepHold()
				holdTotal.Add(now() - t1)
				holder.Store(0)
				sections.Add(1)
				relMu.Lock()
				relAt, relBy = now(), i
				relMu.Unlock()
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				err = release(rctx)
				rcancel()
				if err != nil {
					fail(fmt.Errorf("release: %w", err))
					return
				}
			}
		}()
	}
	ready.Wait()
	stats0, err := commandStats(ctx, b.admin)
	if err != nil {
		cancel()
		close(starts)
		wg.Wait()
		return c1Result{}, err
	}
	sent0 := s.sent.Load()
	start := time.Now()
	close(starts)
	timer := time.NewTimer(window)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true)
	end := now()
	elapsed := time.Since(start)
	// Goroutines still waiting when the window closes count with the wait
	// they have had so far.
	var openWait time.Duration
	for i := range waitStart {
		if ws := waitStart[i].Load(); ws != 0 {
			openWait = max(openWait, time.Duration(end-ws))
		}
	}
	cancel()
	wg.Wait()
	sent := s.sent.Load() - sent0
	stats1, err := commandStats(ctx, b.admin)
	if err != nil {
		return c1Result{}, err
	}
	r := c1Result{
		sections:   sections.Load(),
		elapsed:    elapsed,
		sent:       sent,
		executed:   lockCommands(stats0, stats1),
		violations: violations.Load(),
		reacquired: reacquired.Load(),
		errs:       errs.Load(),
		firstErr:   firstErr,
	}
	for i := 0; i < g; i++ {
		r.handoffs = append(r.handoffs, handoffs[i]...)
		r.waits = append(r.waits, waits[i]...)
		r.maxWait = max(r.maxWait, maxWaits[i])
	}
	r.maxWait = max(r.maxWait, openWait)
	slices.Sort(r.handoffs)
	slices.Sort(r.waits)
	if r.sections > 0 {
		r.meanHold = time.Duration(holdTotal.Load() / r.sections)
	}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, nil
}
