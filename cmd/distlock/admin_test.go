package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// ownerOf is the default owner label of the distlock process p: the host
// name and its pid.
func ownerOf(t *testing.T, p *proc) string {
	t.Helper()
	host, err := os.Hostname()
	require.NoError(t, err)
	return host + ":" + strconv.Itoa(p.cmd.Process.Pid)
}

// TestListCommand: list shows every lock under the prefix with its TTL,
// fence, owner and kind (a run's lock, a tick, Once's done mark), as a
// table and as JSON parsed back; PATTERN narrows it; an empty list is a
// header, or [].
func TestListCommand(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	ctx := context.Background()

	code, stdout, stderr := runDistlock(t, "", nil, "list", "--redis", url)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "KEY  TTL  FENCE  OWNER  KIND\n", stdout)
	code, stdout, stderr = runDistlock(t, "", nil, "list", "--redis", url, "--json")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "[]\n", stdout)

	h := start(t, "hold", nil, "run", "--redis", url, "--fencing", "--ttl", "20s", "nightly-report", "--", self(t))
	h.stdout.waitFor(t, "ready")
	o := start(t, "hold", nil, "run", "--redis", url, "--owner", "deploy@eu-1", "migrate", "--", self(t))
	o.stdout.waitFor(t, "ready")
	lk := distlock.New(srv.Client(t), distlock.WithOwner("cron@web-3"))
	claim, err := lk.ClaimTick(ctx, "report", time.Hour)
	require.NoError(t, err)
	require.NoError(t, claim.Finish(ctx))
	require.NoError(t, lk.Once(ctx, "pay:42", time.Hour, func(context.Context) error { return nil }))
	other, err := distlock.New(srv.Client(t), distlock.WithKeyPrefix("other:")).Obtain(ctx, "x")
	require.NoError(t, err)
	defer other.Release(ctx)
	tick := claim.Lock().Key()

	code, stdout, stderr = runDistlock(t, "", []string{"REDIS_URL=" + url}, "list")
	require.Equal(t, 0, code, stderr)
	t.Logf("distlock list:\n%s", stdout)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 5, stdout)
	assert.Regexp(t, `^KEY +TTL +FENCE +OWNER +KIND$`, lines[0])
	// TTLs as refreshed every TTL/3: between 2/3 of the TTL and all of it.
	assert.Regexp(t, `^migrate +(19\.\d|2\d(\.\d)?|30)s +- +deploy@eu-1 +lock$`, lines[1])
	assert.Regexp(t, `^nightly-report +(1[3-9](\.\d)?|20)s +1 +`+regexp.QuoteMeta(ownerOf(t, h))+` +lock$`, lines[2])
	assert.Regexp(t, `^pay:42 +\S+ +- +cron@web-3 +done$`, lines[3])
	assert.Regexp(t, `^`+regexp.QuoteMeta(tick)+` +\S+ +- +cron@web-3 +tick$`, lines[4])

	code, stdout, stderr = runDistlock(t, "", nil, "list", "--redis", url, "--json")
	require.Equal(t, 0, code, stderr)
	t.Logf("distlock list --json:\n%s", stdout)
	var got []struct {
		Key   string `json:"key"`
		Kind  string `json:"kind"`
		TTLms int64  `json:"ttl_ms"`
		Fence int64  `json:"fence"`
		Owner string `json:"owner"`
		Nodes int    `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
	require.Len(t, got, 4)
	assert.Equal(t, "migrate", got[0].Key)
	assert.Equal(t, "lock", got[0].Kind)
	assert.Equal(t, "deploy@eu-1", got[0].Owner)
	assert.Equal(t, int64(0), got[0].Fence)
	assert.Equal(t, "nightly-report", got[1].Key)
	assert.Equal(t, int64(1), got[1].Fence)
	assert.Equal(t, ownerOf(t, h), got[1].Owner)
	assert.GreaterOrEqual(t, got[1].TTLms, int64(13000))
	assert.LessOrEqual(t, got[1].TTLms, int64(20000))
	assert.Equal(t, "pay:42", got[2].Key)
	assert.Equal(t, "done", got[2].Kind)
	assert.Equal(t, tick, got[3].Key)
	assert.Equal(t, "tick", got[3].Kind)
	for _, g := range got {
		assert.Equal(t, 1, g.Nodes, g.Key)
		assert.Greater(t, g.TTLms, int64(0), g.Key)
	}
	// The raw field names, as documented.
	var raw []map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &raw))
	for _, r := range raw {
		assert.ElementsMatch(t, []string{"key", "kind", "ttl_ms", "fence", "owner", "nodes"}, keysOf(r))
	}

	code, stdout, stderr = runDistlock(t, "", nil, "list", "--redis", url, "--json", "night*")
	require.Equal(t, 0, code, stderr)
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	require.Len(t, got, 1)
	assert.Equal(t, "nightly-report", got[0].Key)
	code, stdout, stderr = runDistlock(t, "", nil, "list", "--redis", url, "--prefix", "other:")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `(?m)^x +`, stdout)

	require.NoError(t, h.stdin.Close())
	require.NoError(t, o.stdin.Close())
	assert.Equal(t, 0, h.wait(t))
	assert.Equal(t, 0, o.wait(t))

	srv.Kill(t)
	code, _, stderr = runDistlock(t, "", nil, "list", "--redis", url)
	assert.Equal(t, exitError, code)
	oneLine(t, stderr)
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestStatusJSON: status --json for a free, a held and a done key, parsed
// back; on a Redlock with per-node entries, and "unknown" with exit 3.
func TestStatusJSON(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	type status struct {
		Key    string `json:"key"`
		State  string `json:"state"`
		TTLms  int64  `json:"ttl_ms"`
		Fence  int64  `json:"fence"`
		Owner  string `json:"owner"`
		Quorum int    `json:"quorum"`
		Nodes  []struct {
			Node  string `json:"node"`
			State string `json:"state"`
			TTLms int64  `json:"ttl_ms"`
			Fence int64  `json:"fence"`
			Owner string `json:"owner"`
			Error string `json:"error"`
		} `json:"nodes"`
	}
	get := func(wantCode int, args ...string) status {
		t.Helper()
		code, stdout, stderr := runDistlock(t, "", nil, append([]string{"status", "--json"}, args...)...)
		require.Equal(t, wantCode, code, stderr)
		var st status
		require.NoError(t, json.Unmarshal([]byte(stdout), &st), stdout)
		return st
	}
	assert.Equal(t, status{Key: "report", State: "free"}, get(0, "--redis", url, "report"))

	h := start(t, "hold", nil, "run", "--redis", url, "--fencing", "--owner", "web-3:4242", "--ttl", "20s", "report", "--", self(t))
	h.stdout.waitFor(t, "ready")
	st := get(0, "--redis", url, "report")
	assert.Equal(t, "held", st.State)
	assert.Equal(t, "web-3:4242", st.Owner)
	assert.Equal(t, int64(1), st.Fence)
	assert.GreaterOrEqual(t, st.TTLms, int64(13000), "refreshed every TTL/3")
	assert.LessOrEqual(t, st.TTLms, int64(20000))
	assert.Empty(t, st.Nodes)
	require.NoError(t, h.stdin.Close())
	assert.Equal(t, 0, h.wait(t))

	require.NoError(t, distlock.New(srv.Client(t), distlock.WithOwner("payer")).Once(context.Background(), "paid", time.Minute,
		func(context.Context) error { return nil }))
	st = get(0, "--redis", url, "paid")
	assert.Equal(t, "done", st.State)
	assert.Equal(t, "payer", st.Owner)
	assert.InDelta(t, 60000, st.TTLms, 2000)

	srvs := redistest.StartN(t, 3)
	args := []string{}
	for _, s := range srvs {
		args = append(args, "--redis", redisURL(s))
	}
	rh := start(t, "hold", nil, append(append([]string{"run"}, args...), "--owner", "rl-holder", "job", "--", self(t))...)
	rh.stdout.waitFor(t, "ready")
	st = get(0, append(args, "job")...)
	assert.Equal(t, "held", st.State)
	assert.Equal(t, "rl-holder", st.Owner)
	assert.Equal(t, 2, st.Quorum)
	require.Len(t, st.Nodes, 3)
	for i, n := range st.Nodes {
		assert.Equal(t, redisURL(srvs[i]), n.Node)
		assert.Equal(t, "held", n.State)
		assert.Equal(t, "rl-holder", n.Owner)
		assert.Empty(t, n.Error)
	}
	require.NoError(t, rh.stdin.Close())
	assert.Equal(t, 0, rh.wait(t))

	srvs[0].Exec(t, "SET", "distlock:{k}", "tok\x00owner:someone", "PX", "60000")
	srvs[2].Kill(t)
	st = get(exitUnknown, append(args, "k")...)
	assert.Equal(t, "unknown", st.State)
	assert.Equal(t, "held", st.Nodes[0].State)
	assert.Equal(t, "someone", st.Nodes[0].Owner)
	assert.Equal(t, "free", st.Nodes[1].State)
	assert.Equal(t, "unknown", st.Nodes[2].State)
	assert.NotEmpty(t, st.Nodes[2].Error)
}

// TestReleaseForce: release refuses without --force; with it, it shows the
// lock and asks: n (or no answer) leaves it, y deletes it; --yes does not
// ask. The holder (distlock run) learns at its next refresh and stops its
// command; a run waiting for the lock gets it. Not held: exit 1.
func TestReleaseForce(t *testing.T) {
	srv := redistest.Start(t)
	url := redisURL(srv)
	held := func() bool { return srv.Exec(t, "EXISTS", "distlock:{job}").(int64) == 1 }

	h := start(t, "hold", nil, "run", "--redis", url, "--ttl", "3s", "--fencing", "--owner", "stuck-worker", "job", "--", self(t))
	h.stdout.waitFor(t, "ready")

	code, stdout, stderr := runDistlock(t, "", nil, "release", "--redis", url, "job")
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, stdout)
	oneLine(t, stderr)
	assert.Contains(t, stderr, "--force is required")
	assert.True(t, held())

	for _, answer := range []string{"n\n", "", "yes please\n"} {
		p := start(t, "", nil, "release", "--force", "--redis", url, "job")
		_, err := p.stdin.Write([]byte(answer))
		require.NoError(t, err)
		require.NoError(t, p.stdin.Close())
		assert.Equal(t, exitError, p.wait(t), "answer %q", answer)
		assert.Empty(t, p.stdout.String())
		assert.Contains(t, p.stderr.String(), `Force-release lock "job" (held, expires in `)
		assert.Contains(t, p.stderr.String(), "owner stuck-worker; fence 1)? [y/N] ")
		assert.Contains(t, p.stderr.String(), "not confirmed; nothing released")
		assert.True(t, held(), "answer %q released it", answer)
	}

	log := filepath.Join(t.TempDir(), "log")
	waiter := start(t, "append:"+log+":waiter ran", nil, "run", "--redis", url+"?client_name=waiter", "--wait", "20s", "job", "--", self(t))
	waitCond(t, "the waiting run connected", func() bool {
		return strings.Contains(srv.Exec(t, "CLIENT", "LIST").(string), "name=waiter")
	})

	p := start(t, "", nil, "release", "--force", "--redis", url, "job")
	p.stderr.waitFor(t, "[y/N] ")
	assert.True(t, held(), "released before the answer")
	_, err := p.stdin.Write([]byte("y\n"))
	require.NoError(t, err)
	assert.Equal(t, 0, p.wait(t), p.stderr)
	assert.Equal(t, "released \"job\" (force): waiters woken; its holder learns at its next refresh\n", p.stdout.String())

	// The waiter runs; the old holder's run stops its command.
	assert.Equal(t, 0, waiter.wait(t), waiter.stderr)
	got, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, "waiter ran\n", string(got))
	assert.Equal(t, exitError, h.wait(t), h.stderr)
	assert.Contains(t, h.stderr.String(), "force-released by an operator")

	// --yes: no question.
	h = start(t, "hold", nil, "run", "--redis", url, "job", "--", self(t))
	h.stdout.waitFor(t, "ready")
	code, stdout, stderr = runDistlock(t, "", nil, "release", "--force", "--yes", "--redis", url, "job")
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, `released "job"`)
	assert.Empty(t, stderr)
	assert.False(t, held())
	require.NoError(t, h.stdin.Close())
	h.wait(t)

	// Not held: nothing to release, asked or not.
	for _, args := range [][]string{{"release", "--force", "--yes", "--redis", url, "job"}, {"release", "--force", "--redis", url, "job"}} {
		code, stdout, stderr = runDistlock(t, "", nil, args...)
		assert.Equal(t, exitError, code, "%q", args)
		assert.Empty(t, stdout)
		oneLine(t, stderr)
		assert.Contains(t, stderr, `release "job": not held: nothing to release`)
	}
}

// TestReleaseForceRedlock: release --force --yes over 3 nodes deletes the
// key on every node; list shows on how many nodes a key is.
func TestReleaseForceRedlock(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	var args []string
	for _, s := range srvs {
		args = append(args, "--redis", redisURL(s))
	}
	h := start(t, "hold", nil, append(append([]string{"run"}, args...), "--node-timeout", "200ms", "job", "--", self(t))...)
	h.stdout.waitFor(t, "ready")
	srvs[1].Exec(t, "SET", "distlock:{remnant}", "tok\x00owner:gone", "PX", "60000")

	// The holder's quorum may have left out a node that was slow to answer
	// (a loaded machine): list must count the nodes that hold the key.
	holding := 0
	for _, s := range srvs {
		n, err := s.Client(t).Exists(context.Background(), "distlock:{job}").Result()
		require.NoError(t, err)
		holding += int(n)
	}
	require.GreaterOrEqual(t, holding, 2, "the holder has a quorum")
	code, stdout, stderr := runDistlock(t, "", nil, append([]string{"list"}, args...)...)
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `(?m)^KEY +TTL +FENCE +OWNER +KIND +NODES$`, stdout)
	assert.Regexp(t, fmt.Sprintf(`(?m)^job +\S+ +- +%s +lock +%d/3$`, regexp.QuoteMeta(ownerOf(t, h)), holding), stdout)
	assert.Regexp(t, `(?m)^remnant +\S+ +- +gone +lock +1/3$`, stdout)

	code, stdout, stderr = runDistlock(t, "", nil, append(append([]string{"release", "--force", "--yes"}, args...), "job")...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, `released "job"`)
	for _, s := range srvs {
		assert.EqualValues(t, 0, s.Exec(t, "EXISTS", "distlock:{job}"), s.Addr())
	}
	assert.Equal(t, exitError, h.wait(t), h.stderr)
	assert.Contains(t, h.stderr.String(), "force-released by an operator")
}
