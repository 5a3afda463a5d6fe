package main

import (
	"os"
	"syscall"
	"time"
)

var termSignal os.Signal = syscall.SIGTERM

// sysProcAttr makes the kernel kill a redis-server when the benchmark dies
// without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// processCPU returns the user+system CPU time this process has used.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// sleepHold holds the C1 critical section for about c1Hold without using
// the CPU. It calls nanosleep directly: time.Sleep below a millisecond
// oversleeps by up to a millisecond on Linux, and spinning would take a core
// from redis-server on a small machine.
func sleepHold() {
	ts := syscall.NsecToTimespec(int64(c1Hold))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
