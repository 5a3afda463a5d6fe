//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import (
	"os"
	"os/exec"
)

// Elsewhere COMMAND is started and signalled directly: no process group
// and no guard (see proc_unix.go for what they give).

type started struct {
	cmd *exec.Cmd
}

func startChild(path string, argv, env []string) (*started, error) {
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &started{cmd: cmd}, nil
}

func (c *started) signal(s os.Signal) { _ = c.cmd.Process.Signal(s) }
func (c *started) kill()              { _ = c.cmd.Process.Kill() }
func (c *started) sweep()             {}

var stopSignals = []os.Signal{os.Interrupt}

var forwarded = stopSignals

func guardMode() (int, bool)                  { return 0, false }
func guardMain(parent int, args []string) int { return exitUsage }
