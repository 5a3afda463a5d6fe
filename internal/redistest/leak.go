package redistest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// DefaultLeakMarkers are the stack frames whose goroutines a test run of
// this repository must have stopped by its end: the library's (and this
// harness's) and go-redis's.
var DefaultLeakMarkers = []string{
	"github.com/distlock/distlock",
	"github.com/redis/go-redis",
}

// skippedNoRedis counts the tests of this test binary skipped because
// redis-server is missing.
var skippedNoRedis atomic.Int64

// skipReport is the one line that tells how many tests were skipped for
// lack of redis-server, or "" when none was.
func skipReport() string {
	n := skippedNoRedis.Load()
	if n == 0 {
		return ""
	}
	tests := "tests"
	if n == 1 {
		tests = "test"
	}
	return fmt.Sprintf("redistest: %d %s skipped: no redis-server (install it or set REDIS_SERVER; DISTLOCK_REQUIRE_REDIS=1 makes them fail)\n", n, tests)
}

// RunAndCheckLeaks runs m's tests and returns the exit code for os.Exit.
// It prints one line with the number of tests skipped for lack of
// redis-server, when there were any (go test shows a passing package's
// output with -v, or when run without package arguments in its
// directory). When the tests passed, it waits up to 5s for every goroutine
// whose stack mentions one of DefaultLeakMarkers or of extra to end, and
// fails the run, printing their stacks, when some are left.
func RunAndCheckLeaks(m *testing.M, extra ...string) int {
	code := m.Run()
	fmt.Print(skipReport())
	if code != 0 {
		return code
	}
	markers := append(append([]string(nil), DefaultLeakMarkers...), extra...)
	if leaked := LeakedGoroutines(5*time.Second, markers...); leaked != "" {
		fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%s\n", leaked)
		return 1
	}
	return 0
}

// LeakedGoroutines waits up to timeout for the goroutines whose stacks
// mention one of markers (DefaultLeakMarkers when none are given) to end,
// and returns the stacks of those left, or "" when none is.
func LeakedGoroutines(timeout time.Duration, markers ...string) string {
	if len(markers) == 0 {
		markers = DefaultLeakMarkers
	}
	deadline := time.Now().Add(timeout)
	for {
		var leaked []string
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "redistest.LeakedGoroutines") {
				continue // the goroutine that is looking
			}
			for _, m := range markers {
				if strings.Contains(g, m) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
