package distlock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// TestOwnerShownByStatus: Status shows the owner label stored with a lock
// (the default "host:pid", or WithOwner's), for a lock and for Once's done
// marker, never the token; Lock.Token is the token alone.
func TestOwnerShownByStatus(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))

	assert.Regexp(t, `^.+:[0-9]+$`, distlock.DefaultOwner())
	l, err := lk.Obtain(ctx, "plain")
	require.NoError(t, err)
	assert.Equal(t, distlock.DefaultOwner(), l.Owner())
	assert.NotContains(t, l.Token(), "\x00")
	assert.NotContains(t, l.Token(), distlock.DefaultOwner())
	st, err := lk.Status(ctx, "plain")
	require.NoError(t, err)
	assert.Equal(t, distlock.DefaultOwner(), st.Owner)
	assert.NotContains(t, fmt.Sprintf("%+v", st), l.Token(), "Status reveals the token")
	require.NoError(t, l.Release(ctx))
	st, err = lk.Status(ctx, "plain")
	require.NoError(t, err)
	assert.Equal(t, "", st.Owner, "free: no owner")

	// Every path that stores a value: plain, script (fencing, blocking),
	// Once's done marker; per call and as a default of New.
	named := distlock.New(srv.Client(t), distlock.WithOwner("billing-worker-2"))
	for _, opts := range [][]distlock.Option{nil, {distlock.WithFencing()}, {distlock.WithBlocking()}, {distlock.WithOwner("cron@web-3")}} {
		l, err := named.Obtain(ctx, "k", opts...)
		require.NoError(t, err)
		st, err := named.Status(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, l.Owner(), st.Owner, "%v", opts)
		assert.NotContains(t, fmt.Sprintf("%+v", st), l.Token())
		require.NoError(t, l.Release(ctx))
	}
	require.NoError(t, named.Once(ctx, "paid", time.Minute, func(context.Context) error { return nil }))
	st, err = named.Status(ctx, "paid")
	require.NoError(t, err)
	assert.True(t, st.Done)
	assert.Equal(t, "billing-worker-2", st.Owner, "the done marker keeps the runner's label")

	// The empty label shows none.
	l, err = lk.Obtain(ctx, "anon", distlock.WithOwner(""))
	require.NoError(t, err)
	st, err = lk.Status(ctx, "anon")
	require.NoError(t, err)
	assert.True(t, st.Held)
	assert.Equal(t, "", st.Owner)
	require.NoError(t, l.Release(ctx))

	// A value stored before owner labels (a bare token) has no owner, and
	// Status shows none of it.
	srv.Exec(t, "SET", "distlock:{old}", "an-old-token\x00with-a-nul", "PX", 60000)
	st, err = lk.Status(ctx, "old")
	require.NoError(t, err)
	assert.True(t, st.Held)
	assert.Equal(t, "", st.Owner)
}

// TestOwnerInvalid: a label with a NUL byte, longer than 256 bytes or not
// UTF-8 is bad input, as a default of New and per call.
func TestOwnerInvalid(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, bad := range []string{"a\x00b", strings.Repeat("x", 257), "\xff"} {
		_, err := distlock.New(srv.Client(t)).Obtain(ctx, "k", distlock.WithOwner(bad))
		assert.ErrorIs(t, err, distlock.ErrInvalidArgument, "%q", bad)
		assert.NotErrorIs(t, err, distlock.ErrNotObtained)
		_, err = distlock.New(srv.Client(t), distlock.WithOwner(bad)).Obtain(ctx, "k")
		assert.ErrorIs(t, err, distlock.ErrInvalidArgument, "%q as a default", bad)
		err = distlock.New(srv.Client(t)).Once(ctx, "k", time.Minute, func(context.Context) error { return nil }, distlock.WithOwner(bad))
		assert.ErrorIs(t, err, distlock.ErrInvalidArgument, "%q on Once", bad)
	}
	assert.EqualValues(t, 0, srv.Exec(t, "EXISTS", "distlock:{k}"))
	l, err := distlock.New(srv.Client(t)).Obtain(ctx, "k", distlock.WithOwner(strings.Repeat("é", 128)))
	require.NoError(t, err, "256 bytes of UTF-8")
	require.NoError(t, l.Release(ctx))
}

// TestReattachWithTokenAnotherOwner: a restarted process (another pid,
// another label) re-attaches with its token; the label becomes its own; a
// Lock still running under the old label learns at its next refresh that
// it no longer holds the lock (plain ErrNotHeld, not a force release). A
// value stored before labels re-attaches too. A token that holds the
// holder's token with a label appended is not the holder's token.
func TestReattachWithTokenAnotherOwner(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	before := distlock.New(srv.Client(t), distlock.WithOwner("web-1:100"))
	old, err := before.Obtain(ctx, "job", distlock.WithToken("secret-1"), distlock.WithFencing(), distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, int64(1), old.Fence())

	after := distlock.New(srv.Client(t), distlock.WithOwner("web-1:200"))
	// Not the token: the token with the label appended, and the whole value.
	for _, g := range []string{"secret-1\x00owner:web-1:100", "secret-1\x00owner:", "secret-", "secret-1\x00"} {
		_, err := after.Obtain(ctx, "job", distlock.WithToken(g))
		assert.ErrorIs(t, err, distlock.ErrNotObtained, "%q", g)
	}
	l, err := after.Obtain(ctx, "job", distlock.WithToken("secret-1"), distlock.WithFencing(), distlock.WithTTL(time.Minute))
	require.NoError(t, err, "re-attach under another label")
	assert.Equal(t, "secret-1", l.Token())
	assert.Equal(t, int64(2), l.Fence())
	st, err := after.Status(ctx, "job")
	require.NoError(t, err)
	assert.Equal(t, "web-1:200", st.Owner)

	err = old.Refresh(ctx, 0)
	assert.ErrorIs(t, err, distlock.ErrNotHeld)
	assert.NotErrorIs(t, err, distlock.ErrForceReleased)
	require.NoError(t, l.Refresh(ctx, 0))
	require.NoError(t, l.Release(ctx))

	// Stored before labels: the bare token.
	srv.Exec(t, "SET", "distlock:{legacy}", "secret-2", "PX", 60000)
	_, err = after.Obtain(ctx, "legacy", distlock.WithToken("secret-3"))
	assert.ErrorIs(t, err, distlock.ErrNotObtained)
	l, err = after.Obtain(ctx, "legacy", distlock.WithToken("secret-2"))
	require.NoError(t, err)
	assert.Equal(t, distlock.StoredValue(l), srv.Exec(t, "GET", "distlock:{legacy}"))
	require.NoError(t, l.Release(ctx))
}

// waitSubscribed waits until a client is subscribed to the wake channel
// of the lock named key on srv: a blocked Obtain's subscription, which it
// makes before its second attempt.
func waitSubscribed(t *testing.T, srv *redistest.Server, key string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		res, _ := srv.Exec(t, "PUBSUB", "NUMSUB", "distlock:{"+key+"}:wake").([]any)
		if len(res) == 2 && res[1].(int64) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody subscribed to %q's wake channel within %v", key, waitTimeout)
		}
		<-tick.C
	}
}

// TestForceReleaseWakesWaiterAndTellsHolder: a holder with auto-refresh
// (TTL 9s: a refresh every 3s) and a caller of another process blocked on
// the key, whose fallback re-check is 30s and whose wait is capped by the
// holder's TTL (at least 6s). An operator force-releases the key: the
// waiter obtains it at once (woken by the release's message, well under
// both), and the old holder's Done closes at its next refresh with an
// error matching ErrForceReleased and ErrNotHeld; its Release says the
// same. The new holder is untouched, and a holder whose lock was deleted
// otherwise does not read it as a force release.
func TestForceReleaseWakesWaiterAndTellsHolder(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		holderLk := distlock.New(srv.Client(t), append(opts, distlock.WithOwner("stuck-job"))...)
		waiterLk := distlock.New(srv.Client(t), append(opts, distlock.WithOwner("next-job"))...)
		admin := distlock.New(srv.Client(t), opts...)

		holder, err := holderLk.Obtain(ctx, "report", distlock.WithTTL(9*time.Second), distlock.WithAutoRefresh())
		require.NoError(t, err)
		defer holder.Release(ctx)

		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		got := obtainAsync(wctx, waiterLk, "report", distlock.WithBlocking(), distlock.WithRetry(distlock.LinearBackoff(30*time.Second)))
		waitSubscribed(t, srv, "report")

		forced := time.Now()
		require.NoError(t, admin.ForceRelease(ctx, "report"))
		var w obtained
		select {
		case w = <-got:
		case <-time.After(waitTimeout):
			t.Fatal("the waiter did not obtain the force-released lock")
		}
		require.NoError(t, w.err)
		defer w.l.Release(ctx)
		woke := w.at.Sub(forced)
		t.Logf("waiter obtained %v after the force release", woke)
		assert.Less(t, woke, time.Second, "woken by the release, not by a re-check (30s) or the holder's TTL (≥ 6s)")
		assert.Equal(t, uint64(0), holderLk.LostWakeups()+admin.LostWakeups())

		select {
		case <-holder.Done():
		case <-time.After(waitTimeout):
			t.Fatal("the old holder's Done did not close")
		}
		assert.ErrorIs(t, holder.Err(), distlock.ErrForceReleased)
		assert.ErrorIs(t, holder.Err(), distlock.ErrNotHeld)
		err = holder.Release(ctx)
		assert.ErrorIs(t, err, distlock.ErrForceReleased)

		// The marker is the old holder's alone: the new holder refreshes.
		require.NoError(t, w.l.Refresh(ctx, 0))
		st, err := admin.Status(ctx, "report")
		require.NoError(t, err)
		assert.Equal(t, "next-job", st.Owner)

		// The marker expires with the lock's TTL (9s, plus a second).
		markers := srv.Exec(t, "KEYS", "distlock:{report}:forced:*").([]any)
		require.Len(t, markers, 1)
		pttl := srv.Exec(t, "PTTL", markers[0]).(int64)
		assert.Greater(t, pttl, int64(0))
		assert.LessOrEqual(t, pttl, int64(10000))

		// A lock deleted by hand is lost, not force-released.
		other, err := holderLk.Obtain(ctx, "other", distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		srv.Exec(t, "DEL", "distlock:{other}")
		err = other.Refresh(ctx, 0)
		assert.ErrorIs(t, err, distlock.ErrNotHeld)
		assert.NotErrorIs(t, err, distlock.ErrForceReleased)
	})
}

// TestForceReleaseWithoutRefresh: a holder without auto-refresh learns of
// the force release from Release (and from Refresh); a force release of
// a free key matches ErrNotHeld; a key that holds another type is left
// alone; a Once done marker is deleted, and Once runs again.
func TestForceReleaseWithoutRefresh(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))

	l, err := lk.Obtain(ctx, "a", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, lk.ForceRelease(ctx, "a"))
	err = l.Release(ctx)
	assert.ErrorIs(t, err, distlock.ErrForceReleased)
	assert.ErrorIs(t, err, distlock.ErrNotHeld)

	l, err = lk.Obtain(ctx, "b", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, lk.ForceRelease(ctx, "b"))
	assert.ErrorIs(t, l.Refresh(ctx, 0), distlock.ErrForceReleased)
	select {
	case <-l.Done():
	default:
		t.Error("Done not closed after the refresh that found the force release")
	}

	err = lk.ForceRelease(ctx, "free")
	assert.ErrorIs(t, err, distlock.ErrNotHeld)
	assert.Contains(t, err.Error(), `force release "free"`)
	assert.ErrorIs(t, lk.ForceRelease(ctx, ""), distlock.ErrInvalidArgument)

	srv.Exec(t, "HSET", "distlock:{hash}", "f", "v")
	err = lk.ForceRelease(ctx, "hash")
	assert.ErrorIs(t, err, distlock.ErrInvalidArgument)
	assert.EqualValues(t, 1, srv.Exec(t, "EXISTS", "distlock:{hash}"), "not a lock: left alone")

	runs := 0
	fn := func(context.Context) error { runs++; return nil }
	require.NoError(t, lk.Once(ctx, "pay", time.Hour, fn))
	assert.ErrorIs(t, lk.Once(ctx, "pay", time.Hour, fn), distlock.ErrAlreadyDone)
	require.NoError(t, lk.ForceRelease(ctx, "pay"))
	require.NoError(t, lk.Once(ctx, "pay", time.Hour, fn))
	assert.Equal(t, 2, runs)
	assert.Empty(t, srv.Exec(t, "KEYS", "distlock:{pay}:forced:*"), "no marker for a done marker")
}

// TestListCluster: List finds every lock, done marker and tick claim under
// the prefix across the masters of a 3-master Cluster, with keys in many
// slots, each with its kind, TTL, fence and owner, and nothing else (no
// fence counter, no force-release marker, no other prefix, no key the
// pattern leaves out). A force release on the Cluster tells the holder:
// its marker shares the lock key's slot.
func TestListCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	cc := cl.Client(t)
	ctx := context.Background()
	lk := distlock.New(cc, distlock.WithOwner("svc-a"))

	want := map[string]distlock.LockInfo{}
	masters := map[string]bool{}
	var held []*distlock.Lock
	defer func() {
		for _, l := range held {
			_ = l.Release(ctx)
		}
	}()
	for i := range 60 {
		key := fmt.Sprintf("job:%d", i)
		var opts []distlock.Option
		if i%3 == 0 {
			opts = append(opts, distlock.WithFencing())
		}
		if i%4 == 0 {
			opts = append(opts, distlock.WithOwner(fmt.Sprintf("worker-%d", i)))
		}
		l, err := lk.Obtain(ctx, key, opts...)
		require.NoError(t, err)
		held = append(held, l)
		want[key] = distlock.LockInfo{Key: key, Kind: distlock.KindLock, Fence: l.Fence(), Owner: l.Owner(), Nodes: 1}
		m, err := cc.MasterForKey(ctx, "distlock:{"+key+"}")
		require.NoError(t, err)
		masters[m.Options().Addr] = true
	}
	require.Len(t, masters, 3, "the keys span every master")
	for i := range 5 {
		key := fmt.Sprintf("pay:%d", i)
		require.NoError(t, lk.Once(ctx, key, time.Hour, func(context.Context) error { return nil }))
		want[key] = distlock.LockInfo{Key: key, Kind: distlock.KindDone, Owner: "svc-a", Nodes: 1}
	}
	claim, err := lk.ClaimTick(ctx, "report", time.Hour)
	require.NoError(t, err)
	require.NoError(t, claim.Finish(ctx))
	tickKey := claim.Lock().Key()
	want[tickKey] = distlock.LockInfo{Key: tickKey, Kind: distlock.KindTick, Owner: "svc-a", Nodes: 1}
	odd, err := lk.Obtain(ctx, "{odd}%*", distlock.WithFencing())
	require.NoError(t, err)
	held = append(held, odd)
	want["{odd}%*"] = distlock.LockInfo{Key: "{odd}%*", Kind: distlock.KindLock, Fence: 1, Owner: "svc-a", Nodes: 1}

	// Not listed: another prefix, a released lock (its fence counter
	// stays), a force-released one (its marker stays), a key named like a
	// lock's but with more after the braces.
	other, err := distlock.New(cc, distlock.WithKeyPrefix("other:")).Obtain(ctx, "job:x")
	require.NoError(t, err)
	held = append(held, other)
	gone, err := lk.Obtain(ctx, "job:gone", distlock.WithFencing())
	require.NoError(t, err)
	require.NoError(t, gone.Release(ctx))
	forced, err := lk.Obtain(ctx, "job:forced", distlock.WithAutoRefresh(), distlock.WithTTL(3*time.Second))
	require.NoError(t, err)
	require.NoError(t, lk.ForceRelease(ctx, "job:forced"))
	require.NoError(t, cc.Set(ctx, "distlock:{job:1}:x}", "v", time.Minute).Err())

	list, err := lk.List(ctx, "")
	require.NoError(t, err)
	gotKeys := make([]string, len(list))
	for i, info := range list {
		gotKeys[i] = info.Key
		w, ok := want[info.Key]
		if !assert.True(t, ok, "listed %q", info.Key) {
			continue
		}
		assert.Equal(t, w.Kind, info.Kind, info.Key)
		assert.Equal(t, w.Fence, info.Fence, info.Key)
		assert.Equal(t, w.Owner, info.Owner, info.Key)
		assert.Equal(t, 1, info.Nodes, info.Key)
		assert.Greater(t, info.TTL, time.Duration(0), info.Key)
	}
	assert.Len(t, list, len(want))
	assert.IsIncreasing(t, gotKeys, "sorted by key")

	// A pattern over the name without the prefix.
	list, err = lk.List(ctx, "job:1*")
	require.NoError(t, err)
	var names []string
	for _, info := range list {
		names = append(names, info.Key)
	}
	assert.Equal(t, []string{"job:1", "job:10", "job:11", "job:12", "job:13", "job:14", "job:15", "job:16", "job:17", "job:18", "job:19"}, names)

	// The force-released holder learns of it at its next refresh (TTL/3).
	select {
	case <-forced.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the force-released holder's Done did not close")
	}
	assert.ErrorIs(t, forced.Err(), distlock.ErrForceReleased)
}

// TestRedlockListAndForceRelease: on a Redlock of 3 nodes List merges the
// nodes' keys (Nodes: on how many), and ForceRelease deletes the key on
// every node, wakes a blocked caller at once and tells the auto-refreshed
// holder (ErrForceReleased). With a node down, List returns what the
// others have and a *NodeError; ForceRelease deletes what it can and says
// which node failed.
func TestRedlockListAndForceRelease(t *testing.T) {
	rlModes(t, 3, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		ctx := context.Background()
		rl := distlock.NewRedlock(rlClients(t, srvs), mode, distlock.WithOwner("rl-holder"))
		waiterRl := distlock.NewRedlock(rlClients(t, srvs), mode, distlock.WithOwner("rl-waiter"))

		holder, err := rl.Obtain(ctx, "invoice", distlock.WithTTL(9*time.Second), distlock.WithAutoRefresh(), distlock.WithFencing())
		require.NoError(t, err)
		defer holder.Release(ctx)
		fenced, err := rl.Obtain(ctx, "ledger", distlock.WithFencing(), distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		defer fenced.Release(ctx)
		// A remnant on one node only (a failed attempt's, say).
		srvs[2].Exec(t, "SET", "distlock:{remnant}", "tok\x00owner:crashed", "PX", 60000)

		list, err := rl.List(ctx, "*")
		require.NoError(t, err)
		require.Len(t, list, 3)
		assert.Equal(t, "invoice", list[0].Key)
		assert.Equal(t, 3, list[0].Nodes)
		assert.Equal(t, "rl-holder", list[0].Owner)
		assert.Equal(t, holder.Fence(), list[0].Fence)
		assert.InDelta(t, 9*time.Second, list[0].TTL, float64(2*time.Second))
		assert.Equal(t, "ledger", list[1].Key)
		assert.Equal(t, fenced.Fence(), list[1].Fence)
		assert.Equal(t, "remnant", list[2].Key)
		assert.Equal(t, 1, list[2].Nodes)
		assert.Equal(t, "crashed", list[2].Owner)
		assert.Equal(t, distlock.KindLock, list[2].Kind)

		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		got := obtainAsync(wctx, waiterRl, "invoice", distlock.WithBlocking(), distlock.WithRetry(distlock.LinearBackoff(30*time.Second)))
		for _, s := range srvs {
			waitSubscribed(t, s, "invoice")
		}
		forced := time.Now()
		require.NoError(t, rl.ForceRelease(ctx, "invoice"))
		var w obtained
		select {
		case w = <-got:
		case <-time.After(waitTimeout):
			t.Fatal("the waiter did not obtain the force-released lock")
		}
		require.NoError(t, w.err)
		defer w.l.Release(ctx)
		t.Logf("waiter obtained %v after the force release", w.at.Sub(forced))
		assert.Less(t, w.at.Sub(forced), time.Second, "woken by the release, not by a re-check (30s) or the holder's TTL (≥ 6s)")

		select {
		case <-holder.Done():
		case <-time.After(waitTimeout):
			t.Fatal("the old holder's Done did not close")
		}
		assert.ErrorIs(t, holder.Err(), distlock.ErrForceReleased)
		assert.ErrorIs(t, holder.Err(), distlock.ErrNotHeld)
		require.NoError(t, w.l.Refresh(ctx, 0), "the marker is not the new holder's")

		err = rl.ForceRelease(ctx, "nothing")
		assert.ErrorIs(t, err, distlock.ErrNotHeld)

		// One node down.
		srvs[0].Kill(t)
		list, err = rl.List(ctx, "*")
		var ne *distlock.NodeError
		require.ErrorAs(t, err, &ne)
		assert.Equal(t, 0, ne.Node)
		require.Len(t, list, 3, "the others' keys: %v", list)
		// The waiter may hold "invoice" on two nodes only: woken by the
		// first node's release, it may reach a node before the force
		// release does. "ledger" is on every node.
		assert.Equal(t, "invoice", list[0].Key)
		assert.EqualValues(t, srvs[1].Exec(t, "EXISTS", "distlock:{invoice}").(int64)+srvs[2].Exec(t, "EXISTS", "distlock:{invoice}").(int64), list[0].Nodes)
		assert.Equal(t, "ledger", list[1].Key)
		assert.Equal(t, 2, list[1].Nodes)
		err = rl.ForceRelease(ctx, "ledger")
		require.ErrorAs(t, err, &ne)
		assert.Equal(t, 0, ne.Node)
		assert.EqualValues(t, 0, srvs[1].Exec(t, "EXISTS", "distlock:{ledger}"))
		assert.EqualValues(t, 0, srvs[2].Exec(t, "EXISTS", "distlock:{ledger}"))
		assert.ErrorIs(t, fenced.Refresh(ctx, 0), distlock.ErrForceReleased)
	})
}

// TestRedlockStatusOwner: a Redlock's Status shows the label of the
// holding nodes, and none when a quorum is free.
func TestRedlockStatusOwner(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	ctx := context.Background()
	rl := distlock.NewRedlock(rlClients(t, srvs), distlock.WithOwner("rl-1"))
	l, err := rl.Obtain(ctx, "k")
	require.NoError(t, err)
	st, err := rl.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "rl-1", st.Owner)
	require.NoError(t, l.Release(ctx))
	srvs[0].Exec(t, "SET", "distlock:{k}", "t\x00owner:rl-2", "PX", 60000)
	st, err = rl.Status(ctx, "k")
	require.NoError(t, err)
	assert.False(t, st.Held)
	assert.Equal(t, "", st.Owner)
}

// TestAdminACL: the README's users. A service user (the lock commands
// only) holds a lock; an admin user with the documented admin permissions
// lists and force-releases it; the service user's holder learns of it
// (its refresh reads the marker with GET, which it may). Without +scan the
// admin cannot list.
func TestAdminACL(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	srv.Exec(t, "ACL", "SETUSER", "svc", "on", ">svcpass", "resetkeys", "~distlock:*", "resetchannels", "&distlock:*", "-@all",
		"+set", "+get", "+del", "+pexpire", "+pttl", "+incr", "+publish", "+evalsha", "+eval", "+subscribe", "+unsubscribe")
	admin := []any{"ACL", "SETUSER", "ops", "on", ">opspass", "resetkeys", "~distlock:*", "resetchannels", "&distlock:*", "-@all",
		"+scan", "+get", "+set", "+del", "+pttl", "+publish", "+evalsha", "+eval"}
	srv.Exec(t, admin...)
	user := func(name, pass string) *redis.Client {
		return srv.Client(t, func(o *redis.Options) { o.Username, o.Password = name, pass })
	}
	svc := distlock.New(user("svc", "svcpass"))
	ops := distlock.New(user("ops", "opspass"))

	l, err := svc.Obtain(ctx, "stuck", distlock.WithTTL(3*time.Second), distlock.WithAutoRefresh(), distlock.WithFencing())
	require.NoError(t, err)
	defer l.Release(ctx)
	list, err := ops.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "stuck", list[0].Key)
	assert.Equal(t, int64(1), list[0].Fence)
	st, err := ops.Status(ctx, "stuck")
	require.NoError(t, err)
	assert.Equal(t, distlock.DefaultOwner(), st.Owner)
	require.NoError(t, ops.ForceRelease(ctx, "stuck"))
	assert.Equal(t, uint64(0), ops.LostWakeups())
	select {
	case <-l.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the holder's Done did not close")
	}
	assert.ErrorIs(t, l.Err(), distlock.ErrForceReleased)

	srv.Exec(t, "ACL", "SETUSER", "ops", "-scan")
	_, err = distlock.New(user("ops", "opspass")).List(ctx, "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NOPERM")
	assert.False(t, errors.Is(err, distlock.ErrNotHeld))
}
