//go:build linux

package main

import (
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock/internal/redistest"
)

// forking is a COMMAND that forks: a shell that starts a grandchild and
// waits for it, after printing both pids.
var forking = []string{"sh", "-c", `sleep 30 & echo "pids $$ $!"; wait`}

// forkedPids waits for the pids that forking prints, and makes sure they
// are killed when the test ends, whatever it found.
func forkedPids(t *testing.T, p *proc) (sh, grandchild int) {
	t.Helper()
	p.stdout.waitFor(t, "pids ")
	m := regexp.MustCompile(`pids (\d+) (\d+)`).FindStringSubmatch(p.stdout.String())
	require.NotNil(t, m, p.stdout.String())
	sh, _ = strconv.Atoi(m[1])
	grandchild, _ = strconv.Atoi(m[2])
	t.Cleanup(func() {
		_ = syscall.Kill(sh, syscall.SIGKILL)
		_ = syscall.Kill(grandchild, syscall.SIGKILL)
	})
	return sh, grandchild
}

// readyPid waits for COMMAND's "ready pid=PID" and makes sure it is killed
// when the test ends.
func readyPid(t *testing.T, p *proc) int {
	t.Helper()
	p.stdout.waitFor(t, "ready pid=")
	m := regexp.MustCompile(`ready pid=(\d+)`).FindStringSubmatch(p.stdout.String())
	require.NotNil(t, m, p.stdout.String())
	pid, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// waitDead waits up to within for pid to be gone.
func waitDead(t *testing.T, what string, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still alive %v later", what, pid, within)
		}
		<-tick.C
	}
}

// TestRunLockLostStopsGrandchildren: COMMAND is a shell that forked a
// sleep; the lock is deleted; the grandchild must be gone as well as the
// shell when distlock has exited (it used to get no signal and ran on
// under init). Failed before the fix (grandchild alive).
func TestRunLockLostStopsGrandchildren(t *testing.T) {
	srv := redistest.Start(t)
	p := start(t, "", nil, append([]string{"run", "--redis", redisURL(srv), "--ttl", "2s", "--grace", "500ms", "k9", "--"}, forking...)...)
	sh, grandchild := forkedPids(t, p)
	srv.Exec(t, "DEL", "distlock:{k9}")
	assert.Equal(t, exitError, p.wait(t), p.stderr)
	assert.False(t, alive(sh), "the shell outlived distlock")
	assert.False(t, alive(grandchild), "the grandchild outlived distlock")
}

// TestRunCommandDiesWithDistlock: distlock is SIGKILLed while COMMAND (a
// shell with a forked grandchild) runs: both die within 1s. Failed before
// the fix (both ran on without a lock).
func TestRunCommandDiesWithDistlock(t *testing.T) {
	srv := redistest.Start(t)
	p := start(t, "", nil, append([]string{"run", "--redis", redisURL(srv), "k", "--"}, forking...)...)
	sh, grandchild := forkedPids(t, p)
	require.NoError(t, p.cmd.Process.Kill())
	p.wait(t)
	waitDead(t, "the shell", sh, time.Second)
	waitDead(t, "the grandchild", grandchild, time.Second)
}

// TestRunStopsBeforeExpiry: the holder is cut off from Redis (a stalled
// proxy) and its COMMAND ignores SIGTERM; a second distlock waits for the
// lock. Steps: the holder's refreshes hang; at ValidUntil − grace it sends
// SIGTERM, at ValidUntil SIGKILL; the key expires in Redis a drift margin
// later; the second distlock obtains it and its COMMAND checks that the
// first COMMAND is dead. Failed before the fix: SIGTERM went out only at
// ValidUntil and SIGKILL a grace later, while the second COMMAND ran.
func TestRunStopsBeforeExpiry(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr())
	first := start(t, "stubborn", nil, "run", "--redis", "redis://"+proxy.Addr(), "--ttl", "2s", "--grace", "500ms", "k", "--", self(t))
	pid := readyPid(t, first)
	proxy.Stall(true)

	second := start(t, "checkdead:"+strconv.Itoa(pid), nil, "run", "--redis", redisURL(srv), "--wait", "10s", "k", "--", self(t))
	assert.Equal(t, 0, second.wait(t), second.stderr)
	assert.Equal(t, strconv.Itoa(pid)+" dead\n", second.stdout.String(), "the first COMMAND still ran when the second started")
	assert.Equal(t, exitError, first.wait(t), first.stderr)
	assert.Contains(t, first.stderr.String(), "could not be refreshed")
}

// TestRunForwardsSignalsOnce: each signal sent to distlock reaches COMMAND
// exactly once, and distlock survives it (SIGQUIT included: no stack
// dump). The barrier is SIGTERM, sent after COMMAND reported the signal:
// a duplicate of a lower-numbered signal sent before it would be delivered
// before it. Failed before the fix: SIGUSR1, SIGUSR2, SIGQUIT and SIGWINCH
// were not passed on (USR1/USR2/QUIT killed distlock).
func TestRunForwardsSignalsOnce(t *testing.T) {
	srv := redistest.Start(t)
	for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGQUIT, syscall.SIGWINCH, syscall.SIGINT} {
		p := start(t, "count", nil, "run", "--redis", redisURL(srv), "k", "--", self(t))
		pid := readyPid(t, p)
		require.NoError(t, p.cmd.Process.Signal(sig))
		p.stdout.waitFor(t, "got "+sig.String())
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, 0, p.wait(t), "%v: stderr %q", sig, p.stderr)
		assert.Equal(t, fmt.Sprintf("ready pid=%d\ngot %v\nbye\n", pid, sig), p.stdout.String(), "%v", sig)
	}
}

// TestRunCtrlCOnce: a Ctrl-C on a terminal sends SIGINT to the whole
// foreground process group, distlock's. COMMAND must get it exactly once.
// Failed before the fix: COMMAND was in distlock's group and got it from
// the terminal and again from distlock.
func TestRunCtrlCOnce(t *testing.T) {
	srv := redistest.Start(t)
	p := startWith(t, &syscall.SysProcAttr{Setpgid: true}, "count", nil, "run", "--redis", redisURL(srv), "k", "--", self(t))
	pid := readyPid(t, p)
	require.NoError(t, syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)) // the terminal's Ctrl-C
	p.stdout.waitFor(t, "got interrupt")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.wait(t), p.stderr)
	assert.Equal(t, fmt.Sprintf("ready pid=%d\ngot interrupt\nbye\n", pid), p.stdout.String())
}
