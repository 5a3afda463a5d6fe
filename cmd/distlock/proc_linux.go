package main

import (
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
)

// guardEnv marks the guard process (see proc_unix.go); its value is the pid
// of the distlock that started it.
const guardEnv = "DISTLOCK_GUARD_OF"

// guarded returns the command that runs COMMAND under the guard: distlock
// itself, which the kernel sends SIGTERM when distlock dies.
func guarded(path string, argv, env []string) *exec.Cmd {
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: append([]string{"distlock-guard", path}, argv...),
		Env:  append(env, guardEnv+"="+strconv.Itoa(os.Getpid())),
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGTERM,
		},
	}
	return cmd
}

// startLocked starts cmd from a thread that lives as long as distlock: the
// parent-death signal is sent when the thread that forked the child ends,
// not the process, and Go ends a thread when a goroutine locked to it
// returns. The calling goroutine stays locked to its thread: "distlock run"
// calls this from its main goroutine, which never returns before the
// process exits.
func startLocked(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	return cmd.Start()
}

// guardMode returns the pid of the distlock to guard when this process is
// a guard.
func guardMode() (int, bool) {
	v, ok := os.LookupEnv(guardEnv)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(v)
	return pid, err == nil
}

// guardMain is the guard: it runs COMMAND (args: path, then argv) in its
// own process group, ignores the signals distlock sends the group, and
// SIGKILLs the group as soon as distlock is gone. It exits with COMMAND's
// status (128+N when signal N ended it).
func guardMain(parent int, args []string) int {
	os.Unsetenv(guardEnv)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	// Before Notify, the parent-death SIGTERM would have killed the guard;
	// from here on it arrives on sigs. A parent that died in between is seen
	// here.
	if os.Getppid() != parent || len(args) < 2 {
		return killGroup()
	}
	cmd := &exec.Cmd{
		Path: args[0], Args: args[1:],
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		// Should the guard itself be killed, COMMAND goes with it; distlock
		// then kills the rest of the group.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	if err := startLocked(cmd); err != nil {
		errorf("run %s: %v", args[1], err)
		return exitNoExec
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case <-sigs:
			if os.Getppid() != parent {
				return killGroup()
			}
			// Meant for COMMAND, which has it already.
		case err := <-exited:
			return exitStatus(err)
		}
	}
}

// killGroup SIGKILLs the guard's process group, the guard included.
func killGroup() int {
	_ = syscall.Kill(0, syscall.SIGKILL)
	select {}
}
