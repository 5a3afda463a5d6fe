package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/distlock/distlock"
)

const demoUsage = `Usage: distlock demo [flags]

Simulates replicas of a service that all run the same scheduled job, with
clocks each off by up to a tenth of the period (±50ms at the default 500ms;
real machines under NTP are usually within milliseconds of each other, but
a timer that fires late on a busy machine has the same effect). At every
tick each replica's timer fires the job three ways side by side: with no
lock; with a lock held only while the job runs (what most job lockers do);
and with distlock's OncePerTick. It prints who ran the job in each tick and a
one-line verdict, and exits 0 when OncePerTick ran the job exactly once per
tick. It takes a few seconds.

Without --redis it starts an embedded Redis (miniredis) inside this
process, so it needs nothing installed; its keys expire in real time, as
on a real Redis.

Flags:
  --redis URL        use this Redis instead (keys under "distlock-demo:",
                     gone within seconds)
  --replicas N       how many replicas (default 3, at most 20)
  --ticks N          how many ticks (default 5, at most 100)
  --period DURATION  the job's schedule (default 500ms, 100ms to 1m)

Examples:
  go run ./cmd/distlock demo
  distlock demo --replicas 5 --ticks 10
  distlock demo --redis redis://localhost:6379
`

// Replica i's clock is ahead of true time by clockPattern[i%len]×period
// (negative: behind); a run of the job takes runFraction×period.
var clockPattern = []float64{0, +0.07, -0.10, +0.03, -0.05, +0.09, -0.02, +0.05, -0.08, +0.01}

const runFraction = 0.08

// The three ways of running the job.
const (
	noLock = iota
	whileRunning
	oncePerTick
	ways
)

var wayNames = [ways]string{"no lock", "lock while running", "OncePerTick"}

// onceFunc runs job on locker lk the OncePerTick way: at most once per
// tick of period across the replicas. The demo uses runOncePerTick; its
// tests give a deliberately broken one to check that the demo detects it.
type onceFunc func(ctx context.Context, lk *distlock.Locker, key string, period time.Duration, job func(context.Context, time.Time) error) error

func runOncePerTick(ctx context.Context, lk *distlock.Locker, key string, period time.Duration, job func(context.Context, time.Time) error) error {
	_, err := lk.OncePerTick(ctx, key, period, job)
	return err
}

// demoConfig is what the flags of distlock demo say.
type demoConfig struct {
	url             string // empty: embedded miniredis
	replicas, ticks int
	period          time.Duration
	once            onceFunc
}

type demo struct {
	replicas, ticks int
	period, work    time.Duration
	once            onceFunc
	clocks          []time.Duration // per replica: how far ahead its clock is
	lockers         []*distlock.Locker
	first           time.Time // the first tick

	mu   sync.Mutex
	runs [ways][][]int // by way and tick: the replicas that ran, in order
	errs []error
}

func demoCmd(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	url := fs.String("redis", "", "")
	replicas := fs.Int("replicas", 3, "")
	ticks := fs.Int("ticks", 5, "")
	period := fs.Duration("period", 500*time.Millisecond, "")
	if ok, code := parseFlags(fs, demoUsage, args); !ok {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageErr("demo", "unexpected argument %q", fs.Arg(0))
	case *replicas < 1 || *replicas > 20:
		return usageErr("demo", "--replicas must be in 1..20, got %d", *replicas)
	case *ticks < 1 || *ticks > 100:
		return usageErr("demo", "--ticks must be in 1..100, got %d", *ticks)
	case *period < 100*time.Millisecond || *period > time.Minute:
		return usageErr("demo", "--period must be in 100ms..1m, got %v", *period)
	}
	return runDemo(demoConfig{url: *url, replicas: *replicas, ticks: *ticks, period: *period, once: runOncePerTick})
}

// runDemo runs the demo as cfg says and returns the exit status.
func runDemo(cfg demoConfig) int {
	var where string
	var newClient func() (*redis.Client, error)
	if cfg.url == "" {
		m := miniredis.NewMiniRedis()
		// Without this, miniredis's TTLs only count down when its clock
		// is moved by hand: no key would ever expire, and a claim kept
		// for too short a time would look as good as one kept until the
		// tick is over.
		m.ClockTTL(true)
		if err := m.Start(); err != nil {
			errorf("demo: start the embedded Redis: %v", err)
			return exitError
		}
		defer m.Close()
		where = "embedded (miniredis, inside this process)"
		newClient = func() (*redis.Client, error) {
			return redis.NewClient(&redis.Options{
				Addr:                     m.Addr(),
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			}), nil
		}
	} else {
		remember(cfg.url)
		where = redact(cfg.url)
		newClient = func() (*redis.Client, error) {
			nodes, err := dial([]string{cfg.url})
			if err != nil {
				return nil, err
			}
			return nodes[0].client, nil
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	d := &demo{replicas: cfg.replicas, ticks: cfg.ticks, period: cfg.period, once: cfg.once}
	d.work = time.Duration(float64(d.period) * runFraction)
	prefix := "distlock-demo:" + randomID() + ":"
	for i := range d.replicas {
		d.clocks = append(d.clocks, time.Duration(clockPattern[i%len(clockPattern)]*float64(d.period)).Round(time.Millisecond))
		// Its own client, as another process would have.
		c, err := newClient()
		if err != nil {
			errorf("demo: %v", err)
			return exitUsage
		}
		defer c.Close()
		d.lockers = append(d.lockers, distlock.New(c, distlock.WithKeyPrefix(prefix)))
	}
	if cfg.url != "" {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := d.lockers[0].Status(pctx, "job")
		cancel()
		if err != nil {
			errorf("demo: Redis %s: %s", where, trimPrefix(err))
			return exitError
		}
	}
	d.intro(where)
	return d.run(ctx)
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *demo) name(i int) string { return fmt.Sprintf("r%d", i+1) }

func (d *demo) intro(where string) {
	printf("distlock demo: %d replicas run the same job every %v; a run takes %v.\n", d.replicas, d.period, d.work)
	printf("Redis: %s.\n", where)
	clocks := make([]string, d.replicas)
	for i, c := range d.clocks {
		clocks[i] = fmt.Sprintf("%s %+dms", d.name(i), c.Milliseconds())
	}
	printf("Their clocks are each off by up to a tenth of the period (a timer firing late\n")
	printf("on a busy machine does the same): %s.\n", strings.Join(clocks, ", "))
	if d.replicas > 1 {
		order := d.fireOrder()
		spread := d.clocks[order[0]] - d.clocks[order[len(order)-1]]
		printf("So at each tick %s's timer fires first and %s's last, %v apart.\n", d.name(order[0]), d.name(order[len(order)-1]), spread)
	}
	printf("Every replica runs the job three ways, side by side:\n")
	printf("  %-20s every replica runs it\n", wayNames[noLock])
	printf("  %-20s a lock on the job's name, released when the run ends\n", wayNames[whileRunning])
	printf("  %-20s distlock: a lock on the tick, kept until the tick is over\n", wayNames[oncePerTick])
	printf("\n")
}

// fireOrder lists the replicas by when their timers fire: the clock most
// ahead first.
func (d *demo) fireOrder() []int {
	order := make([]int, d.replicas)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(d.clocks[b] - d.clocks[a]) })
	return order
}

func (d *demo) run(ctx context.Context) int {
	for w := range ways {
		d.runs[w] = make([][]int, d.ticks)
	}
	// Start at a boundary far enough ahead for the earliest timer.
	ahead := slices.Max(d.clocks)
	d.first = time.Now().Truncate(d.period).Add(d.period)
	if time.Until(d.first.Add(-ahead)) < 20*time.Millisecond {
		d.first = d.first.Add(d.period)
	}
	tickDone := make([]sync.WaitGroup, d.ticks)
	for k := range tickDone {
		tickDone[k].Add(d.replicas)
	}
	var wg sync.WaitGroup
	for i := range d.replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.replica(ctx, i, tickDone)
		}()
	}

	cols := d.columns()
	d.row(cols, "tick", wayNames[:]...)
	for k := range d.ticks {
		tickDone[k].Wait()
		cells := make([]string, ways)
		for w := range ways {
			cells[w] = d.cell(w, k)
		}
		d.row(cols, d.tick(k).Format("15:04:05.000"), cells...)
	}
	wg.Wait()
	if ctx.Err() != nil {
		errorf("demo: interrupted")
		return exitError
	}
	totals := make([]string, ways)
	for w := range ways {
		totals[w] = fmt.Sprint(d.total(w))
	}
	d.row(cols, "runs", totals...)
	printf("\n")
	if d.total(whileRunning) > d.ticks {
		printf("With a lock held only while running, a replica whose timer fired after the\n")
		printf("run had ended found the lock free and ran the job again in the same tick.\n")
	}
	return d.verdict()
}

func (d *demo) tick(k int) time.Time { return d.first.Add(time.Duration(k) * d.period) }

// replica is one replica's scheduler: at every tick, when its own clock
// reads the tick, it fires the job the three ways at once.
func (d *demo) replica(ctx context.Context, i int, tickDone []sync.WaitGroup) {
	for k := range d.ticks {
		fire := d.tick(k).Add(-d.clocks[i])
		t := time.NewTimer(time.Until(fire))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			for j := k; j < d.ticks; j++ {
				tickDone[j].Done()
			}
			return
		}
		var wg sync.WaitGroup
		for w := range ways {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.fire(ctx, w, i, k)
			}()
		}
		wg.Wait()
		tickDone[k].Done()
	}
}

// fire runs the job of replica i for tick k one way.
func (d *demo) fire(ctx context.Context, way, i, k int) {
	job := func(ctx context.Context, tick int) error {
		d.record(way, tick, i)
		t := time.NewTimer(d.work)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		return nil
	}
	lk := d.lockers[i]
	var err error
	switch way {
	case noLock:
		err = job(ctx, k)
	case whileRunning:
		err = lk.Do(ctx, "job:while-running", func(ctx context.Context) error { return job(ctx, k) })
		if errors.Is(err, distlock.ErrNotObtained) && ctx.Err() == nil {
			err = nil // another replica is running it
		}
	case oncePerTick:
		err = d.once(ctx, lk, "job:once-per-tick", d.period, func(ctx context.Context, tick time.Time) error {
			return job(ctx, d.tickIndex(tick))
		})
	}
	if err != nil && ctx.Err() == nil {
		d.mu.Lock()
		d.errs = append(d.errs, fmt.Errorf("%s, %s: %w", d.name(i), wayNames[way], err))
		d.mu.Unlock()
	}
}

// tickIndex is the row of a tick; -1 when it is none of the demo's ticks.
func (d *demo) tickIndex(tick time.Time) int {
	for k := range d.ticks {
		if d.tick(k).Equal(tick) {
			return k
		}
	}
	return -1
}

func (d *demo) record(way, k, i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if k < 0 {
		d.errs = append(d.errs, fmt.Errorf("%s, %s: ran for a tick outside the demo", d.name(i), wayNames[way]))
		return
	}
	d.runs[way][k] = append(d.runs[way][k], i)
}

func (d *demo) cell(way, k int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, len(d.runs[way][k]))
	for j, i := range d.runs[way][k] {
		names[j] = d.name(i)
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, " ")
}

func (d *demo) total(way int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, r := range d.runs[way] {
		n += len(r)
	}
	return n
}

// columns returns the widths of the table's columns.
func (d *demo) columns() []int {
	all := make([]string, d.replicas)
	for i := range all {
		all[i] = d.name(i)
	}
	widest := len(strings.Join(all, " "))
	cols := []int{len("00:00:00.000")}
	for _, n := range wayNames {
		cols = append(cols, max(len(n), widest))
	}
	return cols
}

func (d *demo) row(cols []int, first string, cells ...string) {
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s", cols[0]+2, first)
	for j, c := range cells {
		if j == len(cells)-1 {
			b.WriteString(c)
		} else {
			fmt.Fprintf(&b, "%-*s", cols[j+1]+2, c)
		}
	}
	printf("%s\n", strings.TrimRight(b.String(), " "))
}

// verdict prints the one-line verdict and returns the exit status: 0 when
// OncePerTick ran the job exactly once in every tick.
func (d *demo) verdict() int {
	d.mu.Lock()
	errs := d.errs
	d.mu.Unlock()
	var wrong []string
	for k := range d.ticks {
		if n := len(d.runs[oncePerTick][k]); n != 1 {
			wrong = append(wrong, fmt.Sprintf("%d runs at %s", n, d.tick(k).Format("15:04:05.000")))
		}
	}
	others := fmt.Sprintf("without a lock it ran %d times, with a lock held only while running %d times",
		d.total(noLock), d.total(whileRunning))
	switch {
	case len(errs) > 0:
		printf("verdict: FAIL: %s\n", trimPrefix(errs[0]))
		return exitError
	case len(wrong) > 0:
		printf("verdict: FAIL: OncePerTick did not run the job once per tick (%s); %s.\n", strings.Join(wrong, ", "), others)
		return exitError
	}
	printf("verdict: PASS: with OncePerTick the job ran exactly once in each of the %d ticks; %s.\n", d.ticks, others)
	return exitOK
}
