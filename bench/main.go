// Command bench measures distlock side by side with github.com/bsm/redislock,
// github.com/go-redsync/redsync and the redis-benchmark limit, on
// redis-server processes it starts on 127.0.0.1 and stops at the end.
//
//	cd bench && go run .          # full run (a few minutes): writes RESULTS.md and results.png
//	cd bench && go run . -quick   # smoke run (seconds): prints the table, judges no timing
//
// Each figure is the median of several repeats, the libraries interleaved
// (ours, peer, ours, peer, …). The exit status is non-zero when something is
// functionally broken (an error from a library, a mutual-exclusion
// violation, a lost lock), never because a timing target is missed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// bench is one run of the benchmark: its settings and what it measured.
type bench struct {
	quick    bool
	reps     int
	window   time.Duration // U1 and R3/R5 run length
	c1Window time.Duration
	warmup   time.Duration
	s1Locks  int
	s1TTL    time.Duration
	s1Hold   time.Duration
	rbN      map[int]int // redis-benchmark requests per concurrency

	admin    *redis.Client // housekeeping client of the single node
	sets     map[string]*resultSet
	order    []string
	failures []string
	log      io.Writer
	started  time.Time
	took     time.Duration
	env      environment
	outDir   string
	s1Held   func(context.Context) error // test hook: runs once the S1 locks are held
}

func (b *bench) set(id string) *resultSet {
	if s := b.sets[id]; s != nil {
		return s
	}
	s := newResultSet(id)
	b.sets[id] = s
	b.order = append(b.order, id)
	return s
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, format+"\n", args...)
}

// fail records a functional failure: the run exits non-zero.
func (b *bench) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.failures = append(b.failures, msg)
	b.logf("  FAILURE: %s", msg)
}

func (b *bench) rbRequests(c int) int { return b.rbN[c] }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "short smoke run: fewer, shorter repeats; timings are printed but not judged")
	out := fs.String("out", ".", "directory for RESULTS.md and results.png (written by a full run of all rows, or whenever -out is given)")
	only := fs.String("only", "", "comma-separated rows to run (U1,A1,C1,C16,R3,R5,U1R,U1O,SH,M2,S1); default all")
	render := fs.Bool("render", false, "measure nothing: render RESULTS.md and results.png again from results.json in -out")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	testing.Init() // testing.Benchmark (A1) reads -test.benchtime
	b := &bench{
		quick: *quick, reps: 3, window: 2 * time.Second, c1Window: 3 * time.Second, warmup: 300 * time.Millisecond,
		s1Locks: 10000, s1TTL: 3 * time.Second, s1Hold: 30 * time.Second,
		outDir: *out, rbN: map[int]int{}, sets: map[string]*resultSet{}, log: os.Stderr, started: time.Now(),
	}
	if b.quick {
		b.reps, b.window, b.c1Window, b.warmup = 1, 250*time.Millisecond, 500*time.Millisecond, 100*time.Millisecond
		b.s1Locks, b.s1TTL, b.s1Hold = 500, time.Second, 2500*time.Millisecond
		if err := flag.Set("test.benchtime", "100ms"); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
	}
	rows := map[string]bool{}
	for _, r := range strings.Split(*only, ",") {
		if r = strings.TrimSpace(strings.ToUpper(r)); r != "" {
			rows[r] = true
		}
	}
	want := func(id string) bool { return len(rows) == 0 || rows[id] }

	outSet := false
	fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	if *render {
		if err := b.load(filepath.Join(*out, dataFile)); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		if err := b.writeReport(*out, false); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := b.measure(ctx, want); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	b.took = time.Since(b.started)
	fmt.Println(b.mainTable())
	// A full run of every row writes the report; a partial or quick run
	// only when -out is given, so that it never overwrites the real one.
	if (!b.quick && len(rows) == 0) || outSet {
		if err := b.writeReport(*out, true); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if len(b.failures) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d functional failure(s):\n", len(b.failures))
		for _, f := range b.failures {
			fmt.Fprintln(os.Stderr, "  -", f)
		}
		return 1
	}
	b.logf("done in %v", b.took.Round(time.Second))
	return 0
}

// measure starts the servers, runs the rows and stops the servers.
func (b *bench) measure(ctx context.Context, want func(string) bool) error {
	root, err := os.MkdirTemp("", "distlock-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	// One node for U1, A1, C1, C16, S1; five more for Redlock (R3 uses three).
	servers, err := startServers(root, 6)
	if err != nil {
		return err
	}
	defer stopServers(servers)
	single, nodes := servers[0], servers[1:]
	b.admin = newClient(single)
	defer b.admin.Close()
	if b.env, err = probeEnvironment(ctx, b.admin); err != nil {
		return err
	}
	b.logf("machine: %d CPUs (%s), %s, Redis %s; load average %s", b.env.CPUs, b.env.CPUModel, b.env.GoVersion, b.env.RedisVersion, b.env.LoadBefore)

	steps := []struct {
		id  string
		run func() error
	}{
		{"U1", func() error { return b.runU1(ctx, single) }},
		{"A1", func() error { return b.runA1(ctx, single) }},
		{"C1", func() error { return b.runC1(ctx, single, c1Shape4x4) }},
		{"C16", func() error { return b.runC1(ctx, single, c1Shape16x1) }},
		{"R3", func() error { return b.runRedlock(ctx, nodes, 3) }},
		{"R5", func() error { return b.runRedlock(ctx, nodes, 5) }},
		{"U1R", func() error { return b.runU1R(ctx, nodes[3], nodes[4]) }},
		{"SH", func() error { return b.runSH(ctx, single) }},
		{"U1O", func() error { return b.runU1O(ctx, single) }},
		{"M2", func() error { return b.runM2(ctx, single) }},
		{"S1", func() error { return b.runS1(ctx, single) }},
	}
	for _, s := range steps {
		if !want(s.id) {
			continue
		}
		if err := s.run(); err != nil {
			return err
		}
		for _, srv := range servers {
			c := newClient(srv)
			err := flushAll(ctx, c)
			c.Close()
			if err != nil {
				return err
			}
		}
	}
	b.env.LoadAfter = loadAverage()
	return nil
}

// writeReport writes RESULTS.md and the chart into dir, and the raw samples
// too when they are new.
func (b *bench) writeReport(dir string, withData bool) error {
	if withData {
		if err := b.save(filepath.Join(dir, dataFile)); err != nil {
			return err
		}
	}
	if err := b.writeChart(filepath.Join(dir, chartFile)); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(b.markdown()), 0o644); err != nil {
		return err
	}
	b.logf("wrote %s", filepath.Join(dir, "RESULTS.md"))
	return nil
}
