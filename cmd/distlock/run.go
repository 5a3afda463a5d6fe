package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distlock/distlock"
)

const runUsage = `Usage: distlock run [flags] KEY -- COMMAND [ARG...]

Runs COMMAND while holding the lock KEY, like flock(1) for a fleet. Where
the lock is free COMMAND runs; where it is held distlock exits at once with
status 75 and a one-line message, or waits for it with --wait. The lock is
refreshed every TTL/3 while COMMAND runs and released when COMMAND ends.
SIGINT, SIGTERM and SIGHUP are passed on to COMMAND. If the lock is lost
while COMMAND runs (Redis lost it, or could not be reached for a whole TTL),
COMMAND gets SIGTERM, then SIGKILL after --grace, and distlock exits 1.

Flags (before KEY):
  --redis URL             Redis to lock on; default $REDIS_URL. Give it three or
                          more times for Redlock over independent nodes.
                          redis://[user:password@]host:port[/db]; rediss:// for TLS
  --ttl DURATION          how long the lock lives without a refresh, which is how
                          long a crashed distlock keeps the others out (default 30s)
  --wait DURATION         wait up to DURATION for a held lock (default 0: do not wait)
  --fencing               draw a fencing token: COMMAND gets DISTLOCK_FENCE, a number
                          higher than any fence handed out before for KEY, and
                          DISTLOCK_TOKEN
  --conflict-exit-code N  exit status when the lock is held elsewhere (default 75)
  --grace DURATION        after a lost lock, time between SIGTERM and SIGKILL
                          (default 10s)
  --prefix STRING         namespace of the keys distlock writes (default "distlock:")
  --node-timeout DURATION
                          with Redlock: how long to wait for each node per attempt
                          (default 100ms, at most TTL/10)

COMMAND's environment also has DISTLOCK_KEY, the lock's name.

Exit status: COMMAND's own (128+N when signal N ended it); 75 when the lock
is held elsewhere; 1 when the lock was lost or Redis failed; 2 on a usage
error; 126 when COMMAND cannot be run, 127 when it is not found.

Examples:
  # crontab: the nightly report runs on one machine of the fleet
  0 3 * * *  distlock run --redis redis://redis-1:6379 nightly-report -- /opt/app/report.sh

  # wait up to a minute for the migration lock
  distlock run --wait 1m migrate -- ./migrate up

  # give the fencing token to the guarded resource
  distlock run --fencing deploy -- sh -c 'deploy --fence "$DISTLOCK_FENCE"'
`

// releaseTimeout bounds the release after COMMAND ended.
const releaseTimeout = 5 * time.Second

// forwarded are the signals passed on to COMMAND.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var urls urlList
	fs.Var(&urls, "redis", "")
	ttl := fs.Duration("ttl", distlock.DefaultTTL, "")
	wait := fs.Duration("wait", 0, "")
	fencing := fs.Bool("fencing", false, "")
	conflictCode := fs.Int("conflict-exit-code", exitConflict, "")
	grace := fs.Duration("grace", 10*time.Second, "")
	prefix := fs.String("prefix", distlock.DefaultKeyPrefix, "")
	nodeTimeout := fs.Duration("node-timeout", distlock.DefaultNodeTimeout, "")
	if ok, code := parseFlags(fs, runUsage, args); !ok {
		return code
	}
	rest := fs.Args()
	switch {
	case len(rest) == 0:
		return usageErr("run", "missing KEY and COMMAND")
	case rest[0] == "":
		return usageErr("run", "empty KEY")
	case *ttl <= 0:
		return usageErr("run", "--ttl must be positive, got %v", *ttl)
	case *wait < 0:
		return usageErr("run", "--wait must not be negative, got %v", *wait)
	case *grace < 0:
		return usageErr("run", "--grace must not be negative, got %v", *grace)
	case *nodeTimeout <= 0:
		return usageErr("run", "--node-timeout must be positive, got %v", *nodeTimeout)
	case *conflictCode < 0 || *conflictCode > 255:
		return usageErr("run", "--conflict-exit-code must be in 0..255, got %d", *conflictCode)
	}
	key, command := rest[0], rest[1:]
	if len(command) > 0 && command[0] == "--" {
		command = command[1:]
	}
	if len(command) == 0 {
		return usageErr("run", "missing COMMAND after %s --", key)
	}
	list, err := redisURLs(urls)
	if err != nil {
		return usageErr("run", "%v", err)
	}
	b, err := connect(list, *prefix, *nodeTimeout)
	if err != nil {
		errorf("run: %v", err)
		return exitUsage
	}
	defer b.Close()

	r := &runner{b: b, key: key, command: command, grace: *grace, fencing: *fencing, conflictCode: *conflictCode}
	return r.run(*ttl, *wait)
}

type runner struct {
	b            *backend
	key          string
	command      []string
	grace        time.Duration
	fencing      bool
	conflictCode int
}

func (r *runner) name() string { return filepath.Base(r.command[0]) }

func (r *runner) run(ttl, wait time.Duration) int {
	// Catch the signals before anything else: from here on they are
	// handled, first by giving up the wait, then by passing them on.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	lock, code := r.obtain(sigs, ttl, wait)
	if lock == nil {
		return code
	}

	cmd := exec.Command(r.command[0], r.command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "DISTLOCK_KEY="+r.key)
	if r.fencing {
		cmd.Env = append(cmd.Env, "DISTLOCK_FENCE="+strconv.FormatInt(lock.Fence(), 10), "DISTLOCK_TOKEN="+lock.Token())
	}
	if err := cmd.Start(); err != nil {
		r.release(lock)
		errorf("run %s: %v", r.name(), err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return exitNotFound
		}
		return exitNoExec
	}

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var (
		lost    error
		done    = lock.Done()
		killAt  <-chan time.Time
		waitErr error
	)
loop:
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-done:
			done = nil // closed for good; look once
			if lost = lock.Err(); lost == nil {
				continue
			}
			errorf("lock %q lost while %s ran (%s); sending SIGTERM to %s", r.key, r.name(), trimPrefix(lost), r.name())
			_ = cmd.Process.Signal(syscall.SIGTERM)
			t := time.NewTimer(r.grace)
			defer t.Stop()
			killAt = t.C
		case <-killAt:
			killAt = nil
			errorf("%s did not exit within %v of SIGTERM; sending SIGKILL", r.name(), r.grace)
			_ = cmd.Process.Kill()
		case waitErr = <-exited:
			break loop
		}
	}
	code = exitStatus(waitErr)
	if lost != nil {
		r.release(lock)
		errorf("%s stopped (exit status %d) because the lock %q was lost", r.name(), code, r.key)
		return exitError
	}
	if err := r.release(lock); err != nil {
		if errors.Is(err, distlock.ErrNotHeld) {
			errorf("lock %q was no longer held when %s ended (%s): another holder may have run meanwhile", r.key, r.name(), trimPrefix(err))
			return exitError
		}
		errorf("release %q: %s; it expires by itself within its TTL", r.key, trimPrefix(err))
	}
	return code
}

// obtain takes the lock, waiting up to wait. On failure it has printed why
// and returns a nil Lock and the exit status.
func (r *runner) obtain(sigs <-chan os.Signal, ttl, wait time.Duration) (*distlock.Lock, int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := []distlock.Option{distlock.WithTTL(ttl), distlock.WithAutoRefresh()}
	if r.fencing {
		opts = append(opts, distlock.WithFencing())
	}
	if wait > 0 {
		opts = append(opts, distlock.WithBlocking())
		var tcancel context.CancelFunc
		ctx, tcancel = context.WithTimeout(ctx, wait)
		defer tcancel()
	}

	// A signal while waiting gives up the wait.
	var got os.Signal
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case got = <-sigs:
			cancel()
		case <-stop:
		}
	}()
	lock, err := r.b.locker.Obtain(ctx, r.key, opts...)
	close(stop)
	<-watched

	switch {
	case got != nil:
		if lock != nil {
			r.release(lock)
		}
		errorf("interrupted by %v while waiting for lock %q; %s not run", got, r.key, r.name())
		return nil, 128 + signalNumber(got)
	case err == nil:
		return lock, exitOK
	case errors.Is(err, distlock.ErrInvalidArgument):
		errorf("run: %s", trimPrefix(err))
		return nil, exitUsage
	case errors.Is(err, distlock.ErrNotObtained):
		if wait > 0 {
			errorf("lock %q is still held elsewhere after waiting %v; %s not run", r.key, wait, r.name())
		} else {
			errorf("lock %q is held elsewhere%s; %s not run", r.key, r.heldFor(), r.name())
		}
		return nil, r.conflictCode
	default:
		errorf("%s: %s", r.b.what, trimPrefix(err))
		return nil, exitError
	}
}

// heldFor tells how long the current hold still lives, when Redis says so
// quickly; else nothing.
func (r *runner) heldFor() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := r.b.status(ctx, r.key)
	if err != nil || !st.held || st.ttl <= 0 {
		return ""
	}
	return fmt.Sprintf(" (for %v more unless refreshed)", roundTTL(st.ttl))
}

func (r *runner) release(lock *distlock.Lock) error {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	return lock.Release(ctx)
}

// exitStatus turns COMMAND's end into distlock's exit status: its exit
// code, or 128+N when signal N ended it.
func exitStatus(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		if c := ee.ExitCode(); c >= 0 {
			return c
		}
	}
	errorf("wait: %v", err)
	return exitError
}

func signalNumber(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return int(n)
	}
	return 0
}

// trimPrefix drops the library's "distlock: " where it would repeat the
// command's own prefix.
func trimPrefix(err error) string {
	return strings.ReplaceAll(err.Error(), "distlock: ", "")
}

// roundTTL rounds a TTL for people: to 100ms above a second, else to 1ms.
func roundTTL(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
