package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

func redisURL(srv *redistest.Server) string { return "redis://" + srv.Addr() }

// TestRunConcurrentOneRuns: two `run` on one key started together: exactly
// one child runs, the other distlock exits 75 at once with one line on
// stderr. Several rounds, so that either may win.
func TestRunConcurrentOneRuns(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	for round := range 4 {
		a := start(t, "hold", nil, "run", "--redis", url, "job", "--", self(t))
		b := start(t, "hold", nil, "run", "--redis", url, "job", "--", self(t))
		// The loser exits by itself; the winner holds until its stdin ends.
		var winner, loser *proc
		select {
		case <-a.done:
			winner, loser = b, a
		case <-b.done:
			winner, loser = a, b
		case <-time.After(waitTimeout):
			t.Fatalf("round %d: neither run exited: stderr a %q, b %q", round, a.stderr, b.stderr)
		}
		assert.Equal(t, exitConflict, loser.code, "round %d: loser's exit status; stderr %q", round, loser.stderr)
		oneLine(t, loser.stderr.String())
		assert.Contains(t, loser.stderr.String(), `lock "job" is held elsewhere`)
		assert.NotContains(t, loser.stdout.String(), "ready", "the loser's child ran")
		winner.stdout.waitFor(t, "ready")
		require.False(t, winner.exited())
		require.NoError(t, winner.stdin.Close())
		assert.Equal(t, 0, winner.wait(t), "round %d: winner; stderr %q", round, winner.stderr)
	}

	// --conflict-exit-code chooses the status.
	a := start(t, "hold", nil, "run", "--redis", url, "job", "--", self(t))
	a.stdout.waitFor(t, "ready")
	code, _, stderr := runDistlock(t, "exit:0", nil, "run", "--redis", url, "--conflict-exit-code", "9", "job", "--", self(t))
	assert.Equal(t, 9, code)
	oneLine(t, stderr)
	require.NoError(t, a.stdin.Close())
	assert.Equal(t, 0, a.wait(t))
}

func TestRunPassesExitStatusThrough(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		mode string
		want int
	}{
		{"exit:0", 0},
		{"exit:3", 3},
		{"exit:42", 42},
		{"exit:75", 75},
		{"selfkill", 128 + int(syscall.SIGKILL)},
	}
	for _, tt := range tests {
		code, _, stderr := runDistlock(t, tt.mode, nil, "run", "--redis", redisURL(srv), "k", "--", self(t))
		assert.Equal(t, tt.want, code, "%s: stderr %q", tt.mode, stderr)
	}
	// The lock was released each time: the key is free.
	assert.EqualValues(t, 0, srv.Exec(t, "EXISTS", "distlock:{k}"))
}

// TestRunWait: with --wait the second run waits for the first and then
// runs; its child starts after the first child ended.
func TestRunWait(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	log := filepath.Join(t.TempDir(), "log")

	first := start(t, "hold", nil, "run", "--redis", url, "k", "--", self(t))
	first.stdout.waitFor(t, "ready")
	second := start(t, "append:"+log+":second ran", nil, "run", "--redis", url+"?client_name=waiter", "--wait", "20s", "k", "--", self(t))
	// Wait until the second is connected (and so trying), then end the
	// first's child.
	waitCond(t, "the waiting run connected", func() bool {
		return strings.Contains(srv.Exec(t, "CLIENT", "LIST").(string), "name=waiter")
	})
	require.NoError(t, os.WriteFile(log, []byte("first ended\n"), 0o600))
	require.NoError(t, first.stdin.Close())
	assert.Equal(t, 0, first.wait(t), "first: %s", first.stderr)
	assert.Equal(t, 0, second.wait(t), "second: %s", second.stderr)
	got, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, "first ended\nsecond ran\n", string(got))

	// A wait that runs out is a conflict.
	first = start(t, "hold", nil, "run", "--redis", url, "k", "--", self(t))
	first.stdout.waitFor(t, "ready")
	began := time.Now()
	code, stdout, stderr := runDistlock(t, "exit:0", nil, "run", "--redis", url, "--wait", "300ms", "k", "--", self(t))
	assert.Equal(t, exitConflict, code)
	assert.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond)
	assert.Empty(t, stdout)
	oneLine(t, stderr)
	assert.Contains(t, stderr, "still held elsewhere after waiting 300ms")
	require.NoError(t, first.stdin.Close())
	assert.Equal(t, 0, first.wait(t))
}

// waitCond waits until cond holds, checking every 10ms: for conditions of
// other processes that cannot signal the test.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitTimeout)
		}
		<-tick.C
	}
}

func TestRunFencing(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	env := regexp.MustCompile(`(?m)^(DISTLOCK_\w+)=(.*)$`)
	parse := func(out string) map[string]string {
		m := map[string]string{}
		for _, kv := range env.FindAllStringSubmatch(out, -1) {
			m[kv[1]] = kv[2]
		}
		return m
	}
	var last int64
	tokens := map[string]bool{}
	for range 3 {
		code, stdout, stderr := runDistlock(t, "env", nil, "run", "--redis", url, "--fencing", "deploy", "--", self(t))
		require.Equal(t, 0, code, stderr)
		vars := parse(stdout)
		assert.Equal(t, "deploy", vars["DISTLOCK_KEY"])
		fence, err := strconv.ParseInt(vars["DISTLOCK_FENCE"], 10, 64)
		require.NoError(t, err, "DISTLOCK_FENCE in %q", stdout)
		assert.Greater(t, fence, last, "fences rise")
		last = fence
		require.NotEmpty(t, vars["DISTLOCK_TOKEN"])
		assert.False(t, tokens[vars["DISTLOCK_TOKEN"]], "a new token per run")
		tokens[vars["DISTLOCK_TOKEN"]] = true
	}
	// Without --fencing: the key only.
	code, stdout, _ := runDistlock(t, "env", nil, "run", "--redis", url, "deploy", "--", self(t))
	require.Equal(t, 0, code)
	assert.Equal(t, map[string]string{"DISTLOCK_KEY": "deploy"}, parse(stdout))
}

// TestRunLockLost: a FLUSHALL while the child runs: the child gets SIGTERM,
// distlock says why on stderr and exits 1, within a few seconds.
func TestRunLockLost(t *testing.T) {
	srv := redistest.Start(t)
	p := start(t, "hold", nil, "run", "--redis", redisURL(srv), "--ttl", "1s", "k", "--", self(t))
	p.stdout.waitFor(t, "ready")
	srv.Exec(t, "FLUSHALL")
	flushed := time.Now()
	code := p.wait(t)
	assert.Less(t, time.Since(flushed), 5*time.Second)
	assert.Equal(t, exitError, code)
	assert.Contains(t, p.stdout.String(), "got terminated", "the child got SIGTERM")
	assert.Contains(t, p.stderr.String(), `lock "k" lost while`)
	assert.Contains(t, p.stderr.String(), "SIGTERM")
}

// TestRunLockLostStubbornChild: a child that ignores SIGTERM is killed
// after the grace period.
func TestRunLockLostStubbornChild(t *testing.T) {
	srv := redistest.Start(t)
	p := start(t, "stubborn", nil, "run", "--redis", redisURL(srv), "--ttl", "1s", "--grace", "300ms", "k", "--", self(t))
	p.stdout.waitFor(t, "ready")
	srv.Exec(t, "DEL", "distlock:{k}")
	assert.Equal(t, exitError, p.wait(t))
	assert.Contains(t, p.stderr.String(), "SIGKILL")
	assert.Contains(t, p.stderr.String(), "exit status 137")
}

// TestRunForwardsSignals: INT, TERM and HUP sent to distlock reach the
// child; distlock exits with the child's status and releases the lock.
func TestRunForwardsSignals(t *testing.T) {
	srv := redistest.Start(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		p := start(t, "hold", nil, "run", "--redis", redisURL(srv), "k", "--", self(t))
		p.stdout.waitFor(t, "ready")
		require.NoError(t, p.cmd.Process.Signal(sig))
		assert.Equal(t, childExitOnSignal, p.wait(t), "%v: stderr %q", sig, p.stderr)
		assert.Contains(t, p.stdout.String(), "got "+sig.String())
		assert.EqualValues(t, 0, srv.Exec(t, "EXISTS", "distlock:{k}"), "%v: lock released", sig)
	}
}

// TestRunPasswordsNeverShown: with a password-protected Redis, neither a
// wrong password, nor a URL that does not parse, nor status output shows
// the password.
func TestRunPasswordsNeverShown(t *testing.T) {
	const pw = "s3cret-Pw-42"
	srv := redistest.Start(t)
	srv.Exec(t, "CONFIG", "SET", "requirepass", pw) // after start: the harness's probe does not AUTH
	good := "redis://:" + pw + "@" + srv.Addr()

	code, _, stderr := runDistlock(t, "exit:0", nil, "run", "--redis", "redis://:wrong-Pw-17@"+srv.Addr(), "k", "--", self(t))
	assert.Equal(t, exitError, code)
	oneLine(t, stderr)
	assert.NotContains(t, stderr, "wrong-Pw-17")
	assert.Contains(t, stderr, "xxxxx")

	code, _, stderr = runDistlock(t, "exit:0", nil, "run", "--redis", "redis://:"+pw+"@127.0.0.1:notaport", "k", "--", self(t))
	assert.Equal(t, exitUsage, code)
	oneLine(t, stderr)
	assert.NotContains(t, stderr, pw)

	code, _, stderr = runDistlock(t, "exit:0", []string{"REDIS_URL=" + good}, "run", "k", "--", self(t))
	assert.Equal(t, 0, code, stderr)

	h := start(t, "hold", nil, "run", "--redis", good, "--fencing", "k", "--", self(t))
	h.stdout.waitFor(t, "ready")
	code, stdout, stderr := runDistlock(t, "", nil, "status", "--redis", good, "k")
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "held")
	assert.NotContains(t, stdout+stderr, pw)
	code, _, stderr = runDistlock(t, "exit:0", nil, "run", "--redis", good, "k", "--", self(t))
	assert.Equal(t, exitConflict, code)
	assert.NotContains(t, stderr, pw)
	require.NoError(t, h.stdin.Close())
	assert.Equal(t, 0, h.wait(t))

	// Redis down: the error names the server, without the password.
	srv.Kill(t)
	code, _, stderr = runDistlock(t, "exit:0", nil, "run", "--redis", good, "k", "--", self(t))
	assert.Equal(t, exitError, code)
	oneLine(t, stderr)
	assert.Contains(t, stderr, srv.Addr())
	assert.NotContains(t, stderr, pw)
}

func TestRunUsageErrors(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	tests := [][]string{
		{"run"},
		{"run", "--redis", url},
		{"run", "--redis", url, "k"},
		{"run", "--redis", url, "k", "--"},
		{"run", "--redis", url, "--ttl", "0s", "k", "--", "true"},
		{"run", "--redis", url, "--ttl", "1ms", "k", "--", "true"},
		{"run", "--redis", url, "--wait", "-1s", "k", "--", "true"},
		{"run", "--redis", url, "--conflict-exit-code", "256", "k", "--", "true"},
		{"run", "--no-such-flag", "k", "--", "true"},
		{"run", "k", "--", "true"}, // no Redis given
		{"run", "--redis", url, "--redis", url, "k", "--", "true"},
		{"run", "--redis", url, "--node-timeout", "0s", "k", "--", "true"},
		{"run", "--redis", "http://" + srv.Addr(), "k", "--", "true"},
		{"status"},
		{"status", "--redis", url, "a", "b"},
		{"list", "--redis", url, "a", "b"},
		{"list", "--no-such-flag"},
		{"release", "--redis", url, "k"},
		{"release", "--force", "--redis", url},
		{"release", "--force", "--redis", url, "a", "b"},
		{"release", "--force", "--redis", url, "--redis", url, "k"},
		{"demo", "--ticks", "0"},
		{"nosuchcommand"},
	}
	for _, args := range tests {
		code, stdout, stderr := runDistlock(t, "exit:0", nil, args...)
		assert.Equal(t, exitUsage, code, "%q: stderr %q", args, stderr)
		assert.Empty(t, stdout, "%q", args)
		oneLine(t, stderr)
		assert.True(t, strings.HasPrefix(stderr, "distlock: "), "%q: %q", args, stderr)
	}
}

func TestRunCommandNotRunnable(t *testing.T) {
	srv := redistest.Start(t)
	code, _, stderr := runDistlock(t, "", nil, "run", "--redis", redisURL(srv), "k", "--", "/no/such/command")
	assert.Equal(t, exitNotFound, code, stderr)
	oneLine(t, stderr)
	plain := filepath.Join(t.TempDir(), "not-executable")
	require.NoError(t, os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o600))
	code, _, stderr = runDistlock(t, "", nil, "run", "--redis", redisURL(srv), "k", "--", plain)
	assert.Equal(t, exitNoExec, code, stderr)
	assert.EqualValues(t, 0, srv.Exec(t, "EXISTS", "distlock:{k}"), "lock released")
}

func TestStatusCommand(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	code, stdout, stderr := runDistlock(t, "", nil, "status", "--redis", url, "report")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "key:    report\nstate:  free\nfence:  none handed out yet\n", stdout)

	h := start(t, "hold", nil, "run", "--redis", url, "--fencing", "--ttl", "20s", "report", "--", self(t))
	h.stdout.waitFor(t, "ready")
	code, stdout, stderr = runDistlock(t, "", []string{"REDIS_URL=" + url}, "status", "report")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `(?m)^state:  held, expires in (19\.\d+|20)s unless refreshed$`, stdout)
	assert.Contains(t, stdout, "fence:  1 ")
	require.NoError(t, h.stdin.Close())
	assert.Equal(t, 0, h.wait(t))

	// A key that Once marked done shows as done, not as held.
	require.NoError(t, distlock.New(srv.Client(t)).Once(context.Background(), "paid", time.Minute,
		func(context.Context) error { return nil }))
	code, stdout, stderr = runDistlock(t, "", nil, "status", "--redis", url, "paid")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `(?m)^state:  done \(Once ran it; taken for another (59\.\d+|60)s\)$`, stdout)

	srv.Kill(t)
	code, _, stderr = runDistlock(t, "", nil, "status", "--redis", url, "report")
	assert.Equal(t, exitError, code)
	oneLine(t, stderr)
}

func TestDemoEmbedded(t *testing.T) {
	began := time.Now()
	code, stdout, stderr := runDistlock(t, "", nil, "demo")
	assert.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Less(t, time.Since(began), 10*time.Second)
	assert.Contains(t, stdout, "Redis: embedded (miniredis")
	assert.Regexp(t, `(?m)^verdict: PASS: with OncePerTick the job ran exactly once in each of the 5 ticks; without a lock it ran 15 times`, stdout)
	// One table row per tick, each with one OncePerTick run.
	rows := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3}  .*  (r\d+)$`).FindAllStringSubmatch(stdout, -1)
	assert.Len(t, rows, 5, stdout)
	assert.Empty(t, stderr)
}

func TestDemoOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	code, stdout, stderr := runDistlock(t, "", nil, "demo", "--redis", redisURL(srv), "--replicas", "4", "--ticks", "3", "--period", "300ms")
	assert.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "verdict: PASS")
	assert.Contains(t, stdout, "Redis: "+redisURL(srv))
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"run", "--help"}, {"status", "-h"}, {"list", "--help"}, {"release", "--help"}, {"demo", "--help"}, {"help", "run"}} {
		code, stdout, stderr := runDistlock(t, "", nil, args...)
		assert.Equal(t, 0, code, "%q", args)
		assert.Empty(t, stderr)
		assert.Contains(t, stdout, "Usage:", "%q", args)
		assert.Contains(t, stdout, "Examples:", "%q", args)
	}
	code, _, stderr := runDistlock(t, "", nil)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "Usage:")
}

func TestRedact(t *testing.T) {
	secrets = nil
	defer func() { secrets = nil }()
	remember("redis://user:p%40ss-w0rd@host:6379/2")
	tests := []struct{ give, want string }{
		{"redis://user:hunter2@host:6379", "redis://user:xxxxx@host:6379"},
		{"rediss://:hunter2@host", "rediss://:xxxxx@host"},
		{"redis://host:6379", "redis://host:6379"},
		{`parse "redis://u:pw@h:x": invalid port`, `parse "redis://u:xxxxx@h:x": invalid port`},
		{"redis://h/0?password=hunter2&db=1", "redis://h/0?password=xxxxx&db=1"},
		{"auth failed for p@ss-w0rd", "auth failed for xxxxx"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, redact(tt.give))
	}
}

// TestRunRedlock: three --redis URLs make a Redlock: one run at a time,
// fences rise, status shows each node, and the loss of one node does not
// stop it.
func TestRunRedlock(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	args := func(cmd string, more ...string) []string {
		a := []string{cmd}
		for _, s := range srvs {
			a = append(a, "--redis", redisURL(s))
		}
		if cmd == "run" {
			a = append(a, "--node-timeout", "200ms", "--fencing")
		}
		return append(a, more...)
	}
	h := start(t, "hold", nil, args("run", "job", "--", self(t))...)
	h.stdout.waitFor(t, "ready")
	code, _, stderr := runDistlock(t, "exit:0", nil, args("run", "job", "--", self(t))...)
	assert.Equal(t, exitConflict, code, stderr)
	oneLine(t, stderr)
	code, stdout, stderr := runDistlock(t, "", nil, args("status", "job")...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "(held on 3 of 3 nodes; a majority is 2)")
	assert.Equal(t, 3, strings.Count(stdout, "node:   redis://"))
	require.NoError(t, h.stdin.Close())
	assert.Equal(t, 0, h.wait(t), h.stderr)

	srvs[1].Kill(t)
	var last int64
	for range 2 {
		code, stdout, stderr = runDistlock(t, "env", nil, args("run", "job", "--", self(t))...)
		require.Equal(t, 0, code, stderr)
		m := regexp.MustCompile(`DISTLOCK_FENCE=(\d+)`).FindStringSubmatch(stdout)
		require.NotNil(t, m, stdout)
		fence, _ := strconv.ParseInt(m[1], 10, 64)
		assert.Greater(t, fence, last)
		last = fence
	}
	code, stdout, stderr = runDistlock(t, "", nil, args("status", "job")...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "state:  free")
	assert.Contains(t, stdout, "error:")
}

// TestRunOncePer: the cron pattern. Three `run --once-per 2s` per
// boundary, started up to 300ms apart (as cron on three machines whose
// clocks and start-up differ), over 4 boundaries: COMMAND runs exactly
// once per boundary, and the others exit 75. Without --once-per (a plain
// lock held only while COMMAND runs) each of the three ran: the option
// did not exist before.
func TestRunOncePer(t *testing.T) {
	srv := redistest.Start(t)
	log := filepath.Join(t.TempDir(), "log")
	const period = 2 * time.Second
	offsets := []time.Duration{0, 150 * time.Millisecond, 300 * time.Millisecond}
	next := time.Now().Truncate(period).Add(period)
	conflicts := 0
	for range 4 {
		var ps []*proc
		for _, off := range offsets {
			// Waiting for a wall-clock instant, as cron does; not a
			// synchronisation with another process.
			time.Sleep(time.Until(next.Add(off)))
			ps = append(ps, start(t, "", nil, "run", "--redis", redisURL(srv), "--once-per", "2s", "report", "--", "sh", "-c", `echo "$DISTLOCK_TICK" >> "$0"`, log))
		}
		for _, p := range ps {
			switch code := p.wait(t); code {
			case 0:
			case exitConflict:
				conflicts++
				oneLine(t, p.stderr.String())
				assert.Contains(t, p.stderr.String(), `tick of "report" is taken elsewhere`)
			default:
				t.Errorf("exit %d: %s", code, p.stderr)
			}
		}
		next = next.Add(period)
	}
	got, err := os.ReadFile(log)
	require.NoError(t, err)
	lines := strings.Fields(string(got))
	assert.Len(t, lines, 4, "runs: %q", lines)
	assert.Equal(t, 8, conflicts)
	seen := map[string]bool{}
	for _, l := range lines {
		tick, err := time.Parse(time.RFC3339Nano, l)
		require.NoError(t, err, l)
		assert.Zero(t, tick.UnixNano()%int64(period), "tick %s on a boundary", l)
		assert.False(t, seen[l], "tick %s ran twice", l)
		seen[l] = true
	}
}

// TestRunPasswordPiecesNeverShown: passwords holding '@', ':' or a space,
// right or wrong, in URLs that parse or not, with Redis up or down: no
// piece of 4 characters of the password appears in anything distlock
// prints. Failed before the fix: a raw '@' showed the password's tail.
func TestRunPasswordPiecesNeverShown(t *testing.T) {
	srv := redistest.Start(t)
	const right = "Abc@RIGHTPASS:Q9 z"
	srv.Exec(t, "CONFIG", "SET", "requirepass", right)
	noPiece := func(pw, what, s string) {
		t.Helper()
		for _, piece := range fourPieces(pw) {
			if strings.Contains(s, piece) {
				t.Errorf("%s: %q shows %q of the password %q", what, s, piece, pw)
			}
		}
	}
	tests := []struct{ pw, host string }{
		{right, srv.Addr()},                  // a space: does not parse
		{"abc@SECRETTAIL", srv.Addr()},       // wrong, raw '@'
		{"xy:SECRET:TAIL", srv.Addr()},       // wrong, ':'
		{"abc@SECRETTAIL", "127.0.0.1:1"},    // Redis down
		{"abc@SECRETTAIL", "127.0.0.1:nope"}, // bad port
		{"a b@SECRET TAIL", srv.Addr()},      // spaces, '@'
	}
	for _, tt := range tests {
		for _, u := range []string{"redis://user:" + tt.pw + "@" + tt.host, ":" + tt.pw + "@" + tt.host} {
			for _, args := range [][]string{{"run", "--redis", u, "k", "--", "true"}, {"status", "--redis", u, "k"}} {
				code, stdout, stderr := runDistlock(t, "", nil, args...)
				assert.NotEqual(t, 0, code, "%q", args)
				assert.NotEmpty(t, stderr, "%q", args)
				noPiece(tt.pw, u, stdout+stderr)
			}
		}
	}
	// The right password, percent-encoded: it works, and status shows
	// nothing of it.
	good := "redis://:" + url.PathEscape(right) + "@" + srv.Addr()
	code, stdout, stderr := runDistlock(t, "", nil, "status", "--redis", good, "k")
	assert.Equal(t, 0, code, stderr)
	noPiece(right, "status", stdout+stderr)
	noPiece(url.PathEscape(right), "status", stdout+stderr)
}

// fourPieces returns the substrings of 4 characters of s.
func fourPieces(s string) []string {
	r := []rune(s)
	var out []string
	for i := 0; i+4 <= len(r); i++ {
		out = append(out, string(r[i:i+4]))
	}
	return out
}

// TestRunRedlockOnePausedExitsFast: with one of 3 Redlock nodes paused,
// `run … -- true` exits within 5s. Failed before the fix: 30s, the
// autopipeliner's drain on Close, with the node clients' 1s read timeout
// never applied (NewClient had filled in its default first).
func TestRunRedlockOnePausedExitsFast(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	args := []string{"run"}
	for _, s := range srvs {
		args = append(args, "--redis", redisURL(s))
	}
	srvs[2].Pause(t)
	began := time.Now()
	p := start(t, "", nil, append(args, "k", "--", "true")...)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("distlock still running 5s after it started; stderr %q", p.stderr)
	}
	assert.Equal(t, 0, p.code, p.stderr)
	t.Logf("exited after %v", time.Since(began).Round(time.Millisecond))
}

// TestRunExitsPromptlyAfterCommandWithRedisPaused: the single Redis is
// paused while COMMAND runs; COMMAND ends: distlock exits within 3s (the
// bounded release), with COMMAND's status. Failed before the fix (~8.5s).
func TestRunExitsPromptlyAfterCommandWithRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	p := start(t, "hold", nil, "run", "--redis", redisURL(srv), "k", "--", self(t))
	p.stdout.waitFor(t, "ready")
	srv.Pause(t)
	ended := time.Now()
	require.NoError(t, p.stdin.Close())
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		t.Fatalf("distlock still running 3s after its command ended; stderr %q", p.stderr)
	}
	assert.Equal(t, 0, p.code, p.stderr)
	oneLine(t, p.stderr.String())
	assert.Contains(t, p.stderr.String(), "expires by itself")
	t.Logf("exited %v after its command ended", time.Since(ended).Round(time.Millisecond))
}

// TestRunLockLostAsCommandEnds: COMMAND deletes the lock key and exits 0
// (the lock is lost just as it ends, by itself): distlock exits 0, with a
// warning, so that a retrying wrapper does not run the job again. Failed
// before the fix: exit 1.
func TestRunLockLostAsCommandEnds(t *testing.T) {
	srv := redistest.Start(t)
	code, _, stderr := runDistlock(t, "del:"+srv.Addr()+" distlock:{k}", nil, "run", "--redis", redisURL(srv), "k", "--", self(t))
	assert.Equal(t, 0, code, stderr)
	oneLine(t, stderr)
	assert.Contains(t, stderr, `lock "k" was lost just as`)
}

// TestStatusUnknown: a Redlock key held on one node, another node down:
// the majority may hold it, so status says unknown and exits 3. Failed
// before the fix: "free", exit 0.
func TestStatusUnknown(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	args := []string{"status"}
	for _, s := range srvs {
		args = append(args, "--redis", redisURL(s))
	}
	args = append(args, "k")
	srvs[0].Exec(t, "SET", "distlock:{k}", "tok", "PX", "60000")
	srvs[2].Kill(t)
	code, stdout, stderr := runDistlock(t, "", nil, args...)
	assert.Equal(t, 3, code, stderr)
	assert.Contains(t, stdout, "state:  unknown (held on 1 of 3 nodes, 1 did not answer; a majority is 2)")

	// Free on both nodes that answered: no majority can hold it.
	srvs[0].Exec(t, "DEL", "distlock:{k}")
	code, stdout, stderr = runDistlock(t, "", nil, args...)
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "state:  free (held on 0 of 3 nodes, 1 did not answer")
}

// TestRunUsageHints: the usual mistakes get a one-line error with the right
// form (exit 2), and nothing runs. Failed before the fix: the flag after
// KEY ran "--wait" as COMMAND (exit 127), the others gave no hint.
func TestRunUsageHints(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--redis", url, "job", "--wait", "5s", "--", "echo", "hi"}, "flags go before KEY"},
		{[]string{"run", "job", "--redis", url, "--", "echo", "hi"}, "flags go before KEY"},
		{[]string{"run", "--redis", srv.Addr(), "job", "--", "echo", "hi"}, "write redis://" + srv.Addr()},
		{[]string{"status", "--redis", srv.Addr(), "job"}, "write redis://" + srv.Addr()},
		{[]string{"run", "--redis", url, "--wait", "5", "job", "--", "echo", "hi"}, "did you mean 5s?"},
		{[]string{"run", "--redis", url, "--ttl", "10s", "--grace", "6s", "job", "--", "echo", "hi"}, "--grace must be at most half of --ttl (5s)"},
		{[]string{"run", "--redis", url, "--once-per", "1m", "--wait", "1s", "job", "--", "echo", "hi"}, "do not go together"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runDistlock(t, "", nil, tt.args...)
		assert.Equal(t, exitUsage, code, "%q: stderr %q", tt.args, stderr)
		assert.Empty(t, stdout, "%q", tt.args)
		oneLine(t, stderr)
		assert.Contains(t, stderr, tt.want, "%q", tt.args)
	}
}

// TestRunLimit: `run --limit 2`: two copies run at once, a third exits 75
// at once, and a plain run of the key (exclusive) finds it taken. One
// holder's distlock is killed with SIGKILL: its permit comes back by itself
// within its TTL (1s), to a copy waiting with --wait.
func TestRunLimit(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	a := start(t, "hold", nil, "run", "--redis", url, "--limit", "2", "--ttl", "1s", "exports", "--", self(t))
	b := start(t, "hold", nil, "run", "--redis", url, "--limit", "2", "--ttl", "1s", "exports", "--", self(t))
	a.stdout.waitFor(t, "ready")
	b.stdout.waitFor(t, "ready")

	code, stdout, stderr := runDistlock(t, "exit:0", nil, "run", "--redis", url, "--limit", "2", "exports", "--", self(t))
	assert.Equal(t, exitConflict, code, stderr)
	oneLine(t, stderr)
	assert.Contains(t, stderr, `all 2 permits of "exports" are taken`)
	assert.Empty(t, stdout, "a third copy ran")
	code, _, stderr = runDistlock(t, "exit:0", nil, "run", "--redis", url, "exports", "--", self(t))
	assert.Equal(t, exitConflict, code, "a plain run beside the permits: %s", stderr)

	require.NoError(t, a.cmd.Process.Kill())
	a.wait(t)
	killed := time.Now()
	code, _, stderr = runDistlock(t, "exit:0", nil, "run", "--redis", url, "--limit", "2", "--wait", "10s", "exports", "--", self(t))
	assert.Equal(t, 0, code, stderr)
	assert.Less(t, time.Since(killed), 2*time.Second, "the dead copy's permit came back late")

	require.NoError(t, b.stdin.Close())
	assert.Equal(t, 0, b.wait(t), b.stderr)
	assert.EqualValues(t, 0, srv.Exec(t, "EXISTS", "distlock:{exports}"), "every permit given back")

	code, _, stderr = runDistlock(t, "exit:0", nil, "run", "--redis", url, "--limit", "0", "exports", "--", self(t))
	assert.Equal(t, exitUsage, code, stderr)
	code, _, stderr = runDistlock(t, "exit:0", nil, "run", "--redis", url, "--limit", "2", "--once-per", "1m", "exports", "--", self(t))
	assert.Equal(t, exitUsage, code, stderr)
}
