//go:build !unix

package redistest

import (
	"os"
	"syscall"
)

// Without SIGSTOP/SIGCONT, Pause skips the test; stopping falls back to Kill.
var (
	sigStop os.Signal
	sigCont os.Signal
	sigTerm os.Signal = os.Kill
)

func sysProcAttr() *syscall.SysProcAttr { return nil }
