//go:build !linux

package main

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"time"
)

var termSignal os.Signal = os.Interrupt

func sysProcAttr() *syscall.SysProcAttr { return nil }

// processCPU is only measured on Linux.
func processCPU() (time.Duration, error) {
	return 0, errors.New("process CPU time is only measured on Linux")
}

// sleepHold holds the C1 critical section for about c1Hold by spinning:
// time.Sleep oversleeps short waits.
func sleepHold() {
	start := time.Now()
	for time.Since(start) < c1Hold {
		runtime.Gosched()
	}
}
