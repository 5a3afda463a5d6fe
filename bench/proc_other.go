//go:build !linux

package main

import (
	"errors"
	"os"
	"syscall"
	"time"
)

var termSignal os.Signal = os.Interrupt

func sysProcAttr() *syscall.SysProcAttr { return nil }

// processCPU is only measured on Linux.
func processCPU() (time.Duration, error) {
	return 0, errors.New("process CPU time is only measured on Linux")
}
