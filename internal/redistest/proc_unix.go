//go:build unix && !linux

package redistest

import (
	"os"
	"syscall"
)

var (
	sigStop os.Signal = syscall.SIGSTOP
	sigCont os.Signal = syscall.SIGCONT
	sigTerm os.Signal = syscall.SIGTERM
)

func sysProcAttr() *syscall.SysProcAttr { return nil }
