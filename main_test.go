package distlock_test

import (
	"os"
	"testing"

	"github.com/distlock/distlock/internal/redistest"
)

// TestMain runs the tests and then checks that no goroutine of this library,
// of go-redis or of miniredis outlived them: every goroutine must have an
// owner that stops it and waits for it.
func TestMain(m *testing.M) {
	if spec := os.Getenv(permitHolderEnv); spec != "" {
		os.Exit(runPermitHolder(spec)) // a process of TestPermitOfKilledHolderComesBack
	}
	os.Exit(redistest.RunAndCheckLeaks(m, "github.com/alicebob/miniredis"))
}
