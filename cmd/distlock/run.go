package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
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

With --once-per PERIOD, the same line on every machine runs COMMAND once
per PERIOD boundary: the first machine to claim the boundary's tick runs
it, the others exit 75, and the tick stays taken for one PERIOD after the
boundary, so a machine whose clock or cron is late does not run it again.
This is the way to run a cron job on a fleet: a plain lock only keeps two
runs from overlapping, and a short job then runs once per machine.

With --limit N, up to N copies of COMMAND run at once across every machine
running a line with the same KEY and N: each takes one of N permits (a
counting semaphore), refreshed and released like the lock. A permit whose
distlock died comes back by itself after --ttl. A line without --limit
for the same KEY takes it exclusively: it waits for every permit and
keeps them all.

COMMAND runs in a process group of its own; signals go to the whole group,
so whatever COMMAND forks gets them too. SIGINT, SIGTERM, SIGHUP, SIGQUIT,
SIGUSR1, SIGUSR2, SIGWINCH and SIGALRM sent to distlock are passed on, once
each. COMMAND never outlives the lock: if refreshing the lock fails until
--grace before the lock's validity ends (or the lock is lost), the group
gets SIGTERM, and SIGKILL when the validity ends (after --grace at most
when the lock was lost), before another holder can have it. If distlock
itself dies (even by SIGKILL), the group is killed. When COMMAND ends,
what is left of its group is killed before the lock is released.

Flags (before KEY):
  --redis URL             Redis to lock on; default $REDIS_URL. Give it three or
                          more times for Redlock over independent nodes.
                          redis://[user:password@]host:port[/db]; rediss:// for TLS
  --once-per PERIOD       run COMMAND once per PERIOD boundary across all machines
                          running the same line (e.g. 1m for a cron line firing
                          every minute; boundaries are multiples of PERIOD from
                          UTC midnight); the machines that lose exit 75
  --ttl DURATION          how long the lock lives without a refresh, which is how
                          long a crashed distlock keeps the others out (default 30s)
  --wait DURATION         wait up to DURATION for a held lock (default 0: do not wait)
  --limit N               run at most N copies of COMMAND at once across all machines
                          (N permits of KEY); the machines that find every permit
                          taken exit 75, or wait for one with --wait
  --fencing               draw a fencing token: COMMAND gets DISTLOCK_FENCE, a number
                          higher than any fence handed out before for KEY, and
                          DISTLOCK_TOKEN
  --conflict-exit-code N  exit status when the lock is held elsewhere (default 75)
  --grace DURATION        time COMMAND gets between SIGTERM and SIGKILL when the lock
                          cannot be kept; at most half of --ttl (default 10s, or a
                          third of --ttl when that is shorter)
  --prefix STRING         namespace of the keys distlock writes (default "distlock:")
  --owner LABEL           who holds the lock, as distlock status and list show it
                          (default host:pid of this distlock)
  --node-timeout DURATION
                          with Redlock: how long to wait for each node per attempt
                          (default 100ms, at most TTL/10)

COMMAND's environment also has DISTLOCK_KEY, the lock's name, and with
--once-per DISTLOCK_TICK, the boundary it runs for (RFC 3339, UTC).

Exit status: COMMAND's own when it ended by itself (128+N when signal N
ended it), even if the lock was lost just then; 75 when the lock (or the
tick) is held elsewhere; 1 when COMMAND was stopped because the lock could
not be kept, or Redis failed; 2 on a usage error; 126 when COMMAND cannot
be run, 127 when it is not found.

Examples:
  # crontab, the same line on every machine: the report runs once per night
  0 3 * * *  distlock run --redis redis://redis-1:6379 --once-per 1h nightly-report -- /opt/app/report.sh

  # wait up to a minute for the migration lock
  distlock run --wait 1m migrate -- ./migrate up

  # at most 3 exports at once across the fleet, waiting up to 10m for a permit
  distlock run --limit 3 --wait 10m exports -- ./export.sh

  # give the fencing token to the guarded resource
  distlock run --fencing deploy -- sh -c 'deploy --fence "$DISTLOCK_FENCE"'
`

// releaseTimeout bounds the release (or the end of the tick claim) after
// COMMAND ended; distlock exits when it runs out, and the lock then expires
// by itself within its TTL.
const releaseTimeout = 2 * time.Second

// defaultGrace is --grace when not given, unless a third of --ttl is shorter.
const defaultGrace = 10 * time.Second

func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var urls urlList
	fs.Var(&urls, "redis", "")
	ttl := durationFlag(fs, "ttl", distlock.DefaultTTL)
	wait := durationFlag(fs, "wait", 0)
	oncePer := durationFlag(fs, "once-per", 0)
	fencing := fs.Bool("fencing", false, "")
	limit := fs.Int("limit", 0, "")
	conflictCode := fs.Int("conflict-exit-code", exitConflict, "")
	grace := durationFlag(fs, "grace", defaultGrace)
	prefix := fs.String("prefix", distlock.DefaultKeyPrefix, "")
	owner := fs.String("owner", distlock.DefaultOwner(), "")
	nodeTimeout := durationFlag(fs, "node-timeout", distlock.DefaultNodeTimeout)
	if ok, code := parseFlags(fs, runUsage, args); !ok {
		return code
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["grace"] {
		*grace = min(defaultGrace, *ttl/3)
	}
	rest := fs.Args()
	switch {
	case len(rest) == 0:
		return usageErr("run", "missing KEY and COMMAND")
	case rest[0] == "":
		return usageErr("run", "empty KEY")
	case len(rest) > 1 && rest[1] != "--" && strings.HasPrefix(rest[1], "-"):
		return usageErr("run", "flags go before KEY: got %s after KEY %q; write distlock run [flags] KEY -- COMMAND", rest[1], rest[0])
	case *ttl <= 0:
		return usageErr("run", "--ttl must be positive, got %v", *ttl)
	case *wait < 0:
		return usageErr("run", "--wait must not be negative, got %v", *wait)
	case *grace < 0:
		return usageErr("run", "--grace must not be negative, got %v", *grace)
	case *grace > *ttl/2:
		return usageErr("run", "--grace %v does not fit in --ttl %v: COMMAND must be stopped (SIGTERM, SIGKILL --grace later) before the lock can expire, so --grace must be at most half of --ttl (%v)", *grace, *ttl, *ttl/2)
	case *nodeTimeout <= 0:
		return usageErr("run", "--node-timeout must be positive, got %v", *nodeTimeout)
	case *conflictCode < 0 || *conflictCode > 255:
		return usageErr("run", "--conflict-exit-code must be in 0..255, got %d", *conflictCode)
	case *oncePer < 0:
		return usageErr("run", "--once-per must be positive, got %v", *oncePer)
	case *oncePer > 0 && *wait > 0:
		return usageErr("run", "--once-per and --wait do not go together: a tick taken elsewhere stays taken")
	case *oncePer > 0 && *fencing:
		return usageErr("run", "--once-per and --fencing do not go together: every tick has a lock of its own")
	case given["limit"] && *limit < 1:
		return usageErr("run", "--limit must be at least 1, got %d", *limit)
	case *oncePer > 0 && *limit > 0:
		return usageErr("run", "--once-per and --limit do not go together: a tick is claimed by one machine")
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
	path, err := exec.LookPath(command[0])
	if err != nil && !errors.Is(err, exec.ErrDot) {
		errorf("run %s: %v", filepath.Base(command[0]), err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, iofs.ErrNotExist) {
			return exitNotFound
		}
		return exitNoExec
	}
	b, err := connect(list, *prefix, *nodeTimeout)
	if err != nil {
		errorf("run: %v", err)
		return exitUsage
	}
	defer b.Close()

	r := &runner{b: b, key: key, path: path, command: command, grace: *grace, fencing: *fencing,
		conflictCode: *conflictCode, oncePer: *oncePer, limit: *limit, owner: *owner}
	return r.run(*ttl, *wait)
}

type runner struct {
	b            *backend
	key          string
	path         string   // COMMAND's executable, looked up in $PATH
	command      []string // COMMAND and its arguments, as given
	grace        time.Duration
	fencing      bool
	conflictCode int
	oncePer      time.Duration
	limit        int    // --limit: one of limit permits; 0: the lock
	owner        string // the owner label stored with the lock
}

func (r *runner) name() string { return filepath.Base(r.command[0]) }

// held is a lock taken for COMMAND, or a claimed tick: end releases the
// lock or finishes the claim.
type held struct {
	lock *distlock.Lock
	env  []string
	end  func(ctx context.Context) error
}

func (r *runner) run(ttl, wait time.Duration) int {
	// Catch the signals before anything else: from here on they are
	// handled, first by giving up the wait, then by passing them on.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	h, code := r.obtain(sigs, ttl, wait)
	if h == nil {
		return code
	}
	env := append(os.Environ(), "DISTLOCK_KEY="+r.key)
	env = append(env, h.env...)
	c, err := startChild(r.path, r.command, env)
	if err != nil {
		r.end(h)
		errorf("run %s: %v", r.name(), err)
		return exitNoExec
	}
	return r.supervise(c, h, sigs)
}

// supervise passes signals on to COMMAND until it ends, and stops it before
// the lock can expire: SIGTERM when the lock has been lost, or when
// refreshes have kept failing until grace before the lock's validity ends;
// SIGKILL when the validity ends (grace after a loss at most). It returns
// distlock's exit status.
func (r *runner) supervise(c *started, h *held, sigs <-chan os.Signal) int {
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()

	lock := h.lock
	done := lock.Done()
	term := time.NewTimer(time.Until(lock.ValidUntil()) - r.grace)
	defer term.Stop()
	kill := time.NewTimer(0)
	kill.Stop()
	defer kill.Stop()
	var (
		stopped bool   // SIGTERM sent because of the lock
		why     string // why, for the final message
		waitErr error
	)
	stop := func(reason string, killIn time.Duration) {
		stopped, why = true, reason
		term.Stop()
		killIn = max(killIn, 0)
		errorf("%s; sending SIGTERM to %s, SIGKILL in %v", reason, r.name(), roundTTL(killIn))
		c.signal(syscall.SIGTERM)
		kill.Reset(killIn)
	}
loop:
	for {
		select {
		case s := <-sigs:
			c.signal(s)
		case <-term.C:
			left := time.Until(lock.ValidUntil())
			if left > r.grace {
				term.Reset(left - r.grace) // a refresh went through
				continue
			}
			if lock.Err() != nil {
				continue // done is closed too: handled there
			}
			stop(fmt.Sprintf("lock %q could not be refreshed and ends in %v", r.key, roundTTL(left)), left)
		case <-done:
			done = nil // closed for good; look once
			lost := lock.Err()
			if lost == nil {
				continue
			}
			select {
			case waitErr = <-exited: // it ended by itself just then
				break loop
			default:
			}
			killIn := min(r.grace, time.Until(lock.ValidUntil()))
			if stopped {
				kill.Reset(max(killIn, 0))
				continue
			}
			stop(fmt.Sprintf("lock %q lost while %s ran (%s)", r.key, r.name(), trimPrefix(lost)), killIn)
		case <-kill.C:
			if left := time.Until(lock.ValidUntil()); lock.Err() == nil && left > 0 {
				kill.Reset(left) // a late refresh went through: the lock lives on
				continue
			}
			errorf("%s did not exit after SIGTERM; sending SIGKILL to its process group (lock %q)", r.name(), r.key)
			c.kill()
		case waitErr = <-exited:
			break loop
		}
	}
	code := exitStatus(waitErr)
	c.sweep()
	endErr := r.end(h)
	if stopped {
		errorf("%s stopped (exit status %d) because %s", r.name(), code, why)
		return exitError
	}
	switch {
	case endErr == nil:
	case errors.Is(endErr, distlock.ErrNotHeld):
		errorf("lock %q was lost just as %s ended (%s); passing on its exit status %d", r.key, r.name(), trimPrefix(endErr), code)
	default:
		errorf("release %q: %s; it expires by itself within its TTL", r.key, trimPrefix(endErr))
	}
	return code
}

// obtain takes the lock (or claims the tick), waiting up to wait. On
// failure it has printed why and returns nil and the exit status.
func (r *runner) obtain(sigs <-chan os.Signal, ttl, wait time.Duration) (*held, int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := []distlock.Option{distlock.WithTTL(ttl), distlock.WithOwner(r.owner)}
	if r.fencing {
		opts = append(opts, distlock.WithFencing())
	}
	if r.limit > 0 {
		opts = append(opts, distlock.WithLimit(r.limit))
	}
	if wait > 0 {
		opts = append(opts, distlock.WithBlocking())
		var tcancel context.CancelFunc
		ctx, tcancel = context.WithTimeout(ctx, wait)
		defer tcancel()
	}

	// A stop signal while waiting gives up the wait; others are dropped
	// (there is no COMMAND yet to pass them to).
	var got os.Signal
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case s := <-sigs:
				if isStopSignal(s) {
					got = s
					cancel()
					return
				}
			case <-stop:
				return
			}
		}
	}()
	var (
		h   *held
		err error
	)
	if r.oncePer > 0 {
		var claim *distlock.TickClaim
		claim, err = r.b.locker.ClaimTick(ctx, r.key, r.oncePer, opts...)
		if err == nil {
			h = &held{lock: claim.Lock(), end: claim.Finish,
				env: []string{"DISTLOCK_TICK=" + claim.Tick().UTC().Format(time.RFC3339Nano)}}
		}
	} else {
		var lock *distlock.Lock
		lock, err = r.b.locker.Obtain(ctx, r.key, append(opts, distlock.WithAutoRefresh())...)
		if err == nil {
			h = &held{lock: lock, end: lock.Release}
			if r.fencing {
				h.env = []string{"DISTLOCK_FENCE=" + strconv.FormatInt(lock.Fence(), 10), "DISTLOCK_TOKEN=" + lock.Token()}
			}
		}
	}
	close(stop)
	<-watched

	switch {
	case got != nil:
		if h != nil {
			r.end(h)
		}
		errorf("interrupted by %v while waiting for lock %q; %s not run", got, r.key, r.name())
		return nil, 128 + signalNumber(got)
	case err == nil:
		return h, exitOK
	case errors.Is(err, distlock.ErrInvalidArgument):
		errorf("run: %s", trimPrefix(err))
		return nil, exitUsage
	case errors.Is(err, distlock.ErrNotObtained):
		switch {
		case r.oncePer > 0:
			errorf("this %v tick of %q is taken elsewhere; %s not run", r.oncePer, r.key, r.name())
		case r.limit > 0 && wait > 0:
			errorf("all %d permits of %q are still taken after waiting %v; %s not run", r.limit, r.key, wait, r.name())
		case r.limit > 0:
			errorf("all %d permits of %q are taken%s; %s not run", r.limit, r.key, r.heldFor(), r.name())
		case wait > 0:
			errorf("lock %q is still held elsewhere after waiting %v; %s not run", r.key, wait, r.name())
		default:
			errorf("lock %q is held elsewhere%s; %s not run", r.key, r.heldFor(), r.name())
		}
		return nil, r.conflictCode
	default:
		errorf("%s: %s", r.b.what, trimPrefix(err))
		return nil, exitError
	}
}

func isStopSignal(s os.Signal) bool {
	for _, t := range stopSignals {
		if s == t {
			return true
		}
	}
	return false
}

// heldFor tells how long the current hold still lives, when Redis says so
// quickly; else nothing.
func (r *runner) heldFor() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := r.b.status(ctx, r.key)
	if err != nil || st.held != stateHeld || st.ttl <= 0 {
		return ""
	}
	return fmt.Sprintf(" (for %v more unless refreshed)", roundTTL(st.ttl))
}

// end releases the lock (or finishes the tick claim), giving up after
// releaseTimeout: a Redis that does not answer must not keep distlock
// from exiting once COMMAND has ended. The lock then expires by itself.
func (r *runner) end(h *held) error {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	res := make(chan error, 1)
	// If Redis does not answer in time this goroutine is left behind; the
	// process exits right after, which ends it.
	go func() { res <- h.end(ctx) }()
	t := time.NewTimer(releaseTimeout + 100*time.Millisecond)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		return fmt.Errorf("no answer from Redis within %v", releaseTimeout)
	}
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
