package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// row is one line of the results table: our value against one peer's.
type row struct {
	id, metric string
	ours       float64
	peer       string // the peer's name; empty for rows without one
	peerV      float64
	unit       string // format kind: "rate", "ms", "us", "n", "s", "cmds"
	ratio      bool   // show ours ÷ peer
	target     string
	check      func(ours, peer float64) bool // nil: information only
	functional bool                          // judged in -quick too
}

func (r row) verdict(quick bool) string {
	switch {
	case r.check == nil:
		return "—"
	case math.IsNaN(r.ours):
		return "n/a"
	case quick && !r.functional:
		return "not judged (-quick)"
	case r.check(r.ours, r.peerV):
		return "pass"
	}
	return "**FAIL**"
}

func formatValue(unit string, v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	switch unit {
	case "rate":
		return fmt.Sprintf("%.0f/s", v)
	case "ms":
		return fmt.Sprintf("%.3f ms", v)
	case "us":
		return fmt.Sprintf("%.2f µs", v)
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "cmds":
		return fmt.Sprintf("%.1f", v)
	case "B":
		return fmt.Sprintf("%.0f B", v)
	case "pct":
		return fmt.Sprintf("%.1f%%", v)
	case "x":
		return fmt.Sprintf("%.2f×", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func (r row) cells(quick bool) []string {
	ours := formatValue(r.unit, r.ours)
	peer, ratio := "—", "—"
	if r.peer != "" {
		peer = r.peer + ": " + formatValue(r.unit, r.peerV)
		if r.ratio && !math.IsNaN(r.ours) && !math.IsNaN(r.peerV) && r.peerV != 0 {
			ratio = fmt.Sprintf("%.2f×", r.ours/r.peerV)
		}
	}
	return []string{r.id, r.metric, ours, peer, ratio, r.target, r.verdict(quick)}
}

// Checks used by the targets.
func ratioAtLeast(k float64) func(o, p float64) bool {
	return func(o, p float64) bool { return !math.IsNaN(p) && p > 0 && o >= k*p }
}
func ratioAtMost(k float64) func(o, p float64) bool {
	return func(o, p float64) bool { return !math.IsNaN(p) && o <= k*p }
}
func atLeast(limit float64) func(o, p float64) bool {
	return func(o, _ float64) bool { return o >= limit }
}
func atMost(limit float64) func(o, p float64) bool {
	return func(o, _ float64) bool { return o <= limit }
}

// rows builds the results table from the measured sets, in the order of
// the issues.
func (b *bench) rows() []row {
	var rows []row
	u1 := func(g int) *resultSet { return b.sets[fmt.Sprintf("U1/%d", g)] }
	for _, g := range []int{1, 50} {
		s := u1(g)
		if s == nil {
			continue
		}
		metric := fmt.Sprintf("cycles/s, %d goroutine", g)
		if g > 1 {
			metric += "s"
		}
		vsRL := row{id: "U1", metric: metric, ours: s.med(subjOurs, "rate"), peer: subjRedislock,
			peerV: s.med(subjRedislock, "rate"), unit: "rate", ratio: true}
		vsLimit := row{id: "U1", metric: metric, ours: s.med(subjOurs, "rate"), peer: "limit",
			peerV: s.med(subjLimit, "rate"), unit: "rate", ratio: true}
		cpuRow := row{id: "U1", metric: fmt.Sprintf("Redis CPU per cycle, %d g.", g), ours: s.med(subjOurs, "cpu"),
			peer: subjRedislock, peerV: s.med(subjRedislock, "cpu"), unit: "us", ratio: true}
		if g == 1 {
			vsRL.target, vsRL.check = "≥ 1.0× redislock", ratioAtLeast(1.0)
		} else {
			vsRL.target, vsRL.check = "≥ 1.5× redislock", ratioAtLeast(1.5)
			vsLimit.target, vsLimit.check = "≥ 1.2× limit", ratioAtLeast(1.2)
			// Fewer round trips must mean less server CPU: batching only
			// happens under concurrency, so this is judged at 50.
			cpuRow.target, cpuRow.check = "≤ redislock", ratioAtMost(1.0)
		}
		rows = append(rows, vsRL, vsLimit,
			row{id: "U1", metric: metric + ", WithPipelining(false)", ours: s.med(subjOursNoPipe, "rate"),
				peer: subjRedislock, peerV: s.med(subjRedislock, "rate"), unit: "rate", ratio: true},
			cpuRow,
			row{id: "U1", metric: fmt.Sprintf("Redis CPU per cycle, %d g., WithPipelining(false)", g),
				ours: s.med(subjOursNoPipe, "cpu"), peer: subjRedislock, peerV: s.med(subjRedislock, "cpu"), unit: "us", ratio: true},
		)
	}
	for _, g := range []int{1, 50} {
		s := b.sets[fmt.Sprintf("U1R/%d", g)]
		if s == nil {
			continue
		}
		rows = append(rows, row{id: "U1R", metric: fmt.Sprintf("cycles/s, %d goroutine(s), primary with one replica", g),
			ours: s.med(subjOursReplicas, "rate"), peer: subjOursOnReplicated, peerV: s.med(subjOursOnReplicated, "rate"),
			unit: "rate", ratio: true})
	}
	if s := b.sets[fmt.Sprintf("U1O/%d", u1oGoroutines)]; s != nil {
		metric := fmt.Sprintf("cycles/s at %d goroutines with the OpenTelemetry observer ÷ without (median of the repeats' ratios)", u1oGoroutines)
		rows = append(rows,
			row{id: "U1O", metric: metric + ", metrics (its default)", ours: s.med(subjOursOtel, "paired"), unit: "x",
				target: "≥ 0.85×", check: atLeast(0.85)},
			row{id: "U1O", metric: metric + ", metrics and every span sampled", ours: s.med(subjOursOtelAll, "paired"), unit: "x"})
	}
	if s := b.sets[fmt.Sprintf("SH/%d", shGoroutines)]; s != nil {
		for _, name := range []string{subjOursRead, subjOursPermit, subjOursSemWait} {
			rows = append(rows, row{id: "SH", metric: fmt.Sprintf("cycles/s, %d g., %s", shGoroutines, name),
				ours: s.med(name, "rate"), peer: subjOurs + " (distinct keys)", peerV: s.med(subjOurs, "rate"),
				unit: "rate", ratio: true})
		}
	}
	if s := b.sets["M2"]; s != nil {
		rows = append(rows, row{id: "M2", metric: fmt.Sprintf("cycles/s, %d goroutines, ObtainMulti of 2 keys", m2Goroutines),
			ours: s.med(subjOursMultiTwo, "rate"), peer: subjOursPlainOne, peerV: s.med(subjOursPlainOne, "rate"),
			unit: "rate", ratio: true},
			row{id: "M2", metric: fmt.Sprintf("cycles/s, %d goroutines, ObtainMulti of 2 keys", m2Goroutines),
				ours: s.med(subjOursMultiTwo, "rate"), peer: subjOursFencedOne, peerV: s.med(subjOursFencedOne, "rate"),
				unit: "rate", ratio: true})
	}
	if s := b.sets["A1"]; s != nil {
		rows = append(rows,
			row{id: "A1", metric: "allocs per cycle", ours: s.med(subjOurs, "allocs"), peer: subjRedislock,
				peerV: s.med(subjRedislock, "allocs"), unit: "n", ratio: true, target: "≤ redislock", check: ratioAtMost(1.0)},
			row{id: "A1", metric: "bytes per cycle", ours: s.med(subjOurs, "bytes"), peer: subjRedislock,
				peerV: s.med(subjRedislock, "bytes"), unit: "B", ratio: true},
			row{id: "A1", metric: "allocs per cycle, WithPipelining(false)", ours: s.med(subjOursNoPipe, "allocs"),
				peer: subjRedislock, peerV: s.med(subjRedislock, "allocs"), unit: "n", ratio: true},
		)
	}
	for _, n := range []int{3, 5} {
		s := b.sets[fmt.Sprintf("R%d", n)]
		if s == nil {
			continue
		}
		id := fmt.Sprintf("R%d", n)
		rows = append(rows,
			row{id: id, metric: fmt.Sprintf("cycles/s, %d nodes, %d goroutines", n, rlGoroutines),
				ours: s.med(subjOursRedlock, "rate"), peer: subjRedsync,
				peerV: s.med(subjRedsync, "rate"), unit: "rate", ratio: true, target: "≥ 2.0× redsync", check: ratioAtLeast(2.0)},
			row{id: id, metric: "obtain latency p50", ours: s.med(subjOursRedlock, "p50"),
				peer: subjRedsync, peerV: s.med(subjRedsync, "p50"), unit: "ms", ratio: true},
			row{id: id, metric: "obtain latency p99", ours: s.med(subjOursRedlock, "p99"),
				peer: subjRedsync, peerV: s.med(subjRedsync, "p99"), unit: "ms", ratio: true},
			row{id: id, metric: "calls failed by timeout, per run", ours: s.med(subjOursRedlock, "timeouts"),
				peer: subjRedsync, peerV: s.med(subjRedsync, "timeouts"), unit: "n"},
		)
	}
	rows = append(rows, b.contentionRows(c1Shape4x4)...)
	rows = append(rows, b.contentionRows(c1Shape16x1)...)
	if s := b.sets["S1"]; s != nil {
		rows = append(rows,
			row{id: "S1", metric: fmt.Sprintf("locks lost (%d locks, TTL %v, %v)", b.s1Locks, b.s1TTL, b.s1Hold),
				ours: s.med(subjOurs, "lost"), unit: "n", target: "0", check: atMost(0), functional: true},
			row{id: "S1", metric: fmt.Sprintf("refresh commands/s (expected %d locks ÷ TTL/3 = %.0f/s)", b.s1Locks,
				float64(b.s1Locks)/(b.s1TTL.Seconds()/3)), ours: s.med(subjOurs, "refresh"), unit: "rate"},
			row{id: "S1", metric: "client CPU seconds (getrusage, whole process)", ours: s.med(subjOurs, "cpu"), unit: "s"},
			row{id: "S1", metric: "Redis CPU seconds", ours: s.med(subjOurs, "scpu"), unit: "s"},
		)
	}
	return rows
}

// contentionRows are the results rows of one contention shape (C1, C16).
func (b *bench) contentionRows(shape c1Shape) []row {
	s := b.sets[shape.id]
	if s == nil {
		return nil
	}
	id := shape.id
	waiting := float64(shape.lockers - 1)
	rl1 := func(metric string) float64 { return s.med(subjRedislock1, metric) }
	rows := []row{
		{id: id, metric: "critical sections/s", ours: s.med(subjOurs, "rate"), peer: subjRedislock1,
			peerV: rl1("rate"), unit: "rate", ratio: true, target: "≥ redislock-1ms", check: ratioAtLeast(1.0)},
	}
	if shape == c1Shape4x4 {
		rows = append(rows,
			row{id: id, metric: "critical sections/s", ours: s.med(subjOurs, "rate"), peer: subjRedislock10,
				peerV: s.med(subjRedislock10, "rate"), unit: "rate", ratio: true},
			row{id: id, metric: "critical sections/s", ours: s.med(subjOurs, "rate"), peer: subjRedsyncC1,
				peerV: s.med(subjRedsyncC1, "rate"), unit: "rate", ratio: true})
	}
	rows = append(rows,
		row{id: id, metric: "hand-off p50 (to another goroutine)", ours: s.med(subjOurs, "p50"), peer: subjRedislock1, peerV: rl1("p50"),
			unit: "ms", ratio: true, target: "≤ 0.3 ms and < redislock-1ms",
			check: func(o, p float64) bool { return o <= 0.3 && o < p }},
		row{id: id, metric: "hand-off p99 (to another goroutine)", ours: s.med(subjOurs, "p99"), peer: subjRedislock1, peerV: rl1("p99"),
			unit: "ms", ratio: true, target: "≤ 2 ms", check: atMost(2)})
	if shape == c1Shape4x4 {
		rows = append(rows,
			row{id: id, metric: "hand-off p99 (to another goroutine)", ours: s.med(subjOurs, "p99"), peer: subjRedislock10,
				peerV: s.med(subjRedislock10, "p99"), unit: "ms", ratio: true},
			row{id: id, metric: "Redis commands per critical section (sent by clients)", ours: s.med(subjOurs, "sent"),
				peer: subjRedislock1, peerV: rl1("sent"), unit: "cmds", ratio: true,
				target: fmt.Sprintf("≤ 2 + %d waiting lockers = %.0f", shape.lockers-1, 2+waiting), check: atMost(2 + waiting)})
	} else {
		rows = append(rows,
			row{id: id, metric: "Redis commands per critical section (sent by clients)", ours: s.med(subjOurs, "sent"),
				peer: subjRedislock1, peerV: rl1("sent"), unit: "cmds", ratio: true})
	}
	executed := row{id: id, metric: "Redis commands per critical section (commandstats, incl. inside scripts)",
		ours: s.med(subjOurs, "executed"), peer: subjRedislock1, peerV: rl1("executed"), unit: "cmds", ratio: true,
		target: "≤ 6", check: atMost(6)}
	rows = append(rows, executed,
		row{id: id, metric: "longest wait of any goroutine", ours: s.med(subjOurs, "maxwait"), peer: subjRedislock1,
			peerV: rl1("maxwait"), unit: "ms", ratio: true, target: "≤ redislock-1ms",
			check: func(o, p float64) bool { return o <= p }},
		row{id: id, metric: "lock re-acquired by the goroutine that had just released it", ours: s.med(subjOurs, "reacquired"),
			peer: subjRedislock1, peerV: rl1("reacquired"), unit: "pct"},
		// The default (waiting in turn) against barging.
		row{id: id, metric: "critical sections/s, against barging", ours: s.med(subjOurs, "rate"), peer: subjOursBarging,
			peerV: s.med(subjOursBarging, "rate"), unit: "rate", ratio: true},
		row{id: id, metric: "Redis commands per critical section (commandstats), against barging", ours: s.med(subjOurs, "executed"),
			peer: subjOursBarging, peerV: s.med(subjOursBarging, "executed"), unit: "cmds", ratio: true},
		row{id: id, metric: "longest wait of any goroutine, against barging", ours: s.med(subjOurs, "maxwait"), peer: subjOursBarging,
			peerV: s.med(subjOursBarging, "maxwait"), unit: "ms", ratio: true},
	)
	violations := 0.0
	for _, subj := range slices.Sorted(mapKeys(s.values)) {
		for _, v := range s.values[subj]["violations"] {
			violations += v
		}
	}
	return append(rows, row{id: id, metric: "mutual-exclusion violations (all libraries, all repeats)",
		ours: violations, unit: "n", target: "0", check: atMost(0), functional: true})
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// table renders rows as a Markdown table.
func table(header []string, lines [][]string) string {
	var sb strings.Builder
	sb.WriteString("| " + strings.Join(header, " | ") + " |\n")
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
	}
	sb.WriteString("|" + strings.Join(sep, "|") + "|\n")
	for _, l := range lines {
		sb.WriteString("| " + strings.Join(l, " | ") + " |\n")
	}
	return sb.String()
}

func (b *bench) mainTable() string {
	var lines [][]string
	for _, r := range b.rows() {
		lines = append(lines, r.cells(b.quick))
	}
	return table([]string{"row", "metric", "distlock", "peer", "ratio", "target", "result"}, lines)
}

// detailTable shows every subject and metric of one set: median over the
// repeats, and the range.
func (b *bench) detailTable(id string, metrics []string, labels []string, units []string) string {
	s := b.sets[id]
	if s == nil {
		return ""
	}
	var lines [][]string
	subjects := slices.Sorted(mapKeys(s.values))
	slices.SortStableFunc(subjects, func(a, c string) int {
		return rank(a) - rank(c)
	})
	for _, subj := range subjects {
		line := []string{subj}
		for i, m := range metrics {
			lo, hi, n := s.spread(subj, m)
			cell := formatValue(units[i], s.med(subj, m))
			if n > 1 {
				cell += fmt.Sprintf(" (%s – %s)", trimUnit(formatValue(units[i], lo)), trimUnit(formatValue(units[i], hi)))
			}
			line = append(line, cell)
		}
		lines = append(lines, line)
	}
	return table(append([]string{"library"}, labels...), lines)
}

// rank orders subjects: ours first, the limit last.
func rank(s string) int {
	switch {
	case strings.HasPrefix(s, "distlock"):
		return 0
	case strings.HasPrefix(s, "limit"):
		return 2
	}
	return 1
}

func trimUnit(s string) string {
	s = strings.TrimSuffix(s, "/s")
	for _, u := range []string{" ms", " µs", " s", " B", "%", "×"} {
		s = strings.TrimSuffix(s, u)
	}
	return s
}
