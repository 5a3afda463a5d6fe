package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// U1 subjects.
const (
	subjOurs       = "distlock"
	subjOursNoPipe = "distlock WithPipelining(false)"
	subjRedislock  = "redislock"
	subjLimit      = "limit (redis-benchmark SET NX PX ÷ 2)"
)

// runU1 measures uncontended obtain+release on distinct keys at 1 and 50
// goroutines for distlock (default and without pipelining) and redislock,
// interleaved with the redis-benchmark limit, plus Redis CPU per cycle.
func (b *bench) runU1(ctx context.Context, srv *server) error {
	b.logf("U1: uncontended obtain+release, %d repeats of %v", b.reps, b.window)
	cyclers, closeClients := singleNodeCyclers(srv)
	defer closeClients()
	order := []string{subjOurs, subjRedislock, subjOursNoPipe, subjLimit}
	for _, g := range []int{1, 50} {
		set := b.set(fmt.Sprintf("U1/%d", g))
		// Warm up: connections, script caches, the autopipeliner.
		for _, name := range order[:3] {
			if r := runCycles(ctx, cyclers[name], "warm:"+name, g, b.warmup, false); r.errs > 0 {
				return fmt.Errorf("U1 warm-up %s: %w", name, r.firstErr)
			}
		}
		// Size the redis-benchmark runs to about one window each.
		calib := 2000
		if !b.quick {
			calib = 20000
		}
		rps, err := redisBenchmark(ctx, srv, g, calib)
		if err != nil {
			return err
		}
		b.rbN[g] = max(calib, int(rps*b.window.Seconds()))
		for rep := 0; rep < b.reps; rep++ {
			for _, name := range interleave(order, rep) {
				if err := ctx.Err(); err != nil {
					return err
				}
				cpu0, err := serverCPU(ctx, b.admin)
				if err != nil {
					return err
				}
				var rate, perCycle float64
				if name == subjLimit {
					rps, err := redisBenchmark(ctx, srv, g, b.rbRequests(g))
					if err != nil {
						return err
					}
					cpu1, err := serverCPU(ctx, b.admin)
					if err != nil {
						return err
					}
					rate = rps / 2
					perCycle = (cpu1 - cpu0) / float64(b.rbRequests(g)) * 2
				} else {
					r := runCycles(ctx, cyclers[name], fmt.Sprintf("u1:%d:%d", g, rep), g, b.window, false)
					cpu1, err := serverCPU(ctx, b.admin)
					if err != nil {
						return err
					}
					if r.errs > 0 {
						b.fail("U1 %s, %d goroutines: %d errors, first: %v", name, g, r.errs, r.firstErr)
					}
					if r.cycles == 0 {
						b.fail("U1 %s, %d goroutines: no cycle completed", name, g)
						continue
					}
					rate = r.rate()
					perCycle = (cpu1 - cpu0) / float64(r.cycles)
					set.add(name, "timeouts", float64(r.timeouts))
				}
				set.add(name, "rate", rate)
				set.add(name, "cpu", perCycle*1e6) // µs of server CPU per cycle
				b.logf("  U1 %2d goroutines  %-40s %9.0f cycles/s  %6.2f µs Redis CPU/cycle", g, name, rate, perCycle*1e6)
			}
		}
	}
	return nil
}

// interleave returns order, reversed on odd repeats, so that no subject
// always runs first or last.
func interleave(order []string, rep int) []string {
	if rep%2 == 0 {
		return order
	}
	rev := make([]string, len(order))
	for i, s := range order {
		rev[len(order)-1-i] = s
	}
	return rev
}

var rpsPattern = regexp.MustCompile(`([0-9]+(?:\.[0-9]+)?) requests per second`)

// redisBenchmark runs redis-benchmark with SET key tok NX PX at concurrency
// c, unpipelined, on random keys, and returns its requests per second.
func redisBenchmark(ctx context.Context, srv *server, c, n int) (float64, error) {
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark not found: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin,
		"-h", loopback, "-p", strconv.Itoa(srv.port),
		"-c", strconv.Itoa(c), "-n", strconv.Itoa(n), "-P", "1", "-r", "100000", "-q",
		"SET", "rb:__rand_int__", "tok", "NX", "PX", strconv.FormatInt(lockTTL.Milliseconds(), 10))
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("redis-benchmark: %w: %s", err, stderr.String())
	}
	// -q prints progress lines ending in \r, then the final line.
	m := rpsPattern.FindAllSubmatch(out.Bytes(), -1)
	if len(m) == 0 {
		return 0, fmt.Errorf("redis-benchmark: no requests per second in %q", out.String())
	}
	rps, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	if err != nil || rps <= 0 {
		return 0, errors.Join(fmt.Errorf("redis-benchmark: bad rate in %q", out.String()), err)
	}
	return rps, nil
}

// flushAll empties a server between rows.
func flushAll(ctx context.Context, c *redis.Client) error {
	return c.FlushAll(ctx).Err()
}
