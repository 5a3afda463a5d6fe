//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"os/exec"
)

// guarded runs COMMAND directly: these systems have no parent-death signal
// for a guard to rely on (see proc_unix.go).
func guarded(path string, argv, env []string) *exec.Cmd {
	return &exec.Cmd{Path: path, Args: argv, Env: env}
}

func startLocked(cmd *exec.Cmd) error { return cmd.Start() }

func guardMode() (int, bool)                  { return 0, false }
func guardMain(parent int, args []string) int { return exitUsage }
