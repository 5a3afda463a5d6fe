// Package reliability_test checks distlock's guarantees against real
// redis-server processes, several OS processes and injected faults. The
// test binary re-executes itself as a worker process (see worker_test.go);
// RELIABILITY.md at the repository root reports the figures these tests
// produce.
package reliability_test

import (
	"os"
	"testing"

	"github.com/distlock/distlock/internal/redistest"
)

// TestMain runs a worker when the binary was started as one by a test of
// this package, and otherwise the tests followed by a goroutine-leak check.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(workerEnv); cfg != "" {
		os.Exit(runWorker(cfg))
	}
	os.Exit(redistest.RunAndCheckLeaks(m))
}
