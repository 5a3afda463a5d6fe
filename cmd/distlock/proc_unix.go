//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"unsafe"
)

// The process model of "distlock run" (Linux; other systems below):
//
//	distlock (holds the lock, catches and forwards signals)
//	 └─ distlock guard: group leader of a new process group, dies with
//	    │  distlock (PR_SET_PDEATHSIG), then SIGKILLs its whole group
//	    └─ COMMAND and everything it forks (same process group)
//
// distlock sends every signal to the whole group (kill(-pgid)), so
// grandchildren get it too, and exactly once: COMMAND is not in distlock's
// process group, so a Ctrl-C on the terminal does not reach it directly as
// well (when distlock has the terminal, COMMAND's group is given the
// terminal instead, and then only the terminal delivers it). The guard
// ignores the signals distlock forwards; when distlock dies, however it
// dies (SIGKILL, the OOM killer, a crash), the kernel sends the guard
// SIGTERM and the guard SIGKILLs the group, itself included. After COMMAND
// ends, distlock SIGKILLs what is left of the group before it releases the
// lock, so nothing that COMMAND started runs on without it. A process that
// leaves the group (setsid, a daemon) escapes all of this, as it escapes
// flock(1) and timeout(1).
//
// On BSD and macOS there is no guard (no parent-death signal): the group is
// signalled as on Linux, but a distlock that dies leaves COMMAND running.

// started is COMMAND as started by run.
type started struct {
	cmd  *exec.Cmd
	pgid int  // the process group of COMMAND (the guard's pid on Linux)
	fg   bool // COMMAND's group was given the terminal
}

// startChild starts COMMAND (path, run with argv) in a process group of its
// own, under the guard where there is one, with env as its environment.
func startChild(path string, argv, env []string) (*started, error) {
	cmd := guarded(path, argv, env)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	fg := foregroundTTY()
	if fg {
		// COMMAND may read the terminal: its group becomes the foreground
		// one, which also sends it Ctrl-C and window changes directly.
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = int(os.Stdin.Fd())
	}
	if err := startLocked(cmd); err != nil {
		return nil, err
	}
	return &started{cmd: cmd, pgid: cmd.Process.Pid, fg: fg}, nil
}

// signal sends s to COMMAND's whole process group.
func (c *started) signal(s os.Signal) {
	if n, ok := s.(syscall.Signal); ok {
		_ = syscall.Kill(-c.pgid, n)
	}
}

// kill sends SIGKILL to COMMAND's whole process group.
func (c *started) kill() { _ = syscall.Kill(-c.pgid, syscall.SIGKILL) }

// sweep, once COMMAND (or its guard) has been waited for, kills what is
// left of its process group and takes the terminal back.
func (c *started) sweep() {
	c.kill()
	if c.fg {
		// A background process that sets the foreground group gets SIGTTOU
		// unless it ignores it.
		signal.Ignore(syscall.SIGTTOU)
		pgrp := int32(syscall.Getpgrp())
		_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, os.Stdin.Fd(), uintptr(syscall.TIOCSPGRP), uintptr(unsafe.Pointer(&pgrp)))
		signal.Reset(syscall.SIGTTOU)
	}
}

// foregroundTTY reports whether standard input is a terminal whose
// foreground process group is distlock's.
func foregroundTTY() bool {
	var pgrp int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, os.Stdin.Fd(), uintptr(syscall.TIOCGPGRP), uintptr(unsafe.Pointer(&pgrp)))
	return errno == 0 && int(pgrp) == syscall.Getpgrp()
}

// stopSignals are the signals that make distlock give up waiting for the
// lock, and that it forwards to COMMAND.
var stopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// forwarded are all the signals passed on to COMMAND, as tini does: the
// stop signals and those a program uses to be told something.
var forwarded = append(append([]os.Signal{}, stopSignals...),
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGALRM)
