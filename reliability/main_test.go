// Package reliability_test checks distlock's guarantees against real
// redis-server processes, several OS processes and injected faults. The
// test binary re-executes itself as a worker process (see worker_test.go);
// RELIABILITY.md at the repository root reports the figures these tests
// produce.
package reliability_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain runs a worker when the binary was started as one by a test of
// this package, and otherwise the tests followed by a goroutine-leak check.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(workerEnv); cfg != "" {
		os.Exit(runWorker(cfg))
	}
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakMarkers are stack frames of code whose goroutines the tests must stop.
var leakMarkers = []string{
	"github.com/distlock/distlock",
	"github.com/redis/go-redis",
}

// leakedGoroutines waits up to timeout for goroutines running library,
// client or harness code to end and returns the stacks of those left.
func leakedGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		var leaked []string
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "leakedGoroutines") {
				continue
			}
			for _, m := range leakMarkers {
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
		time.Sleep(50 * time.Millisecond)
	}
}
