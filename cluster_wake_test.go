package distlock_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// onlyWakeUps makes a blocked caller re-check by itself only once a minute:
// one that obtains sooner after a release was woken by the release's
// wake-up (or by its subscription being re-established).
var onlyWakeUps = []distlock.Option{
	distlock.WithBlocking(),
	distlock.WithRetry(distlock.LinearBackoff(time.Minute)),
	distlock.WithTTL(time.Minute),
}

// wakeWithin bounds, in these tests, how long a waiter with onlyWakeUps may
// take to obtain a lock released while its subscription is live: a
// wake-up and one attempt, with room for a loaded machine under -race, and
// far below the minute it would wait without the wake-up.
const wakeWithin = 5 * time.Second

// outcome is what a blocked Obtain returned, and when.
type outcome struct {
	l   *distlock.Lock
	err error
	at  time.Time
}

// blockedObtain runs lk.Obtain(ctx, key, opts...) in a goroutine and
// returns the channel its outcome arrives on. The goroutine ends when the
// Obtain returns: the caller receives the outcome, or ends ctx first (see
// awaitOutcome).
func blockedObtain(ctx context.Context, lk *distlock.Locker, key string, opts ...distlock.Option) <-chan outcome {
	res := make(chan outcome, 1)
	go func() {
		l, err := lk.Obtain(ctx, key, opts...)
		res <- outcome{l: l, err: err, at: time.Now()}
	}()
	return res
}

// awaitOutcome waits up to within for a blocked Obtain's outcome, and
// otherwise cancels its ctx, waits for it to return, and fails the test.
func awaitOutcome(t *testing.T, res <-chan outcome, cancel context.CancelFunc, within time.Duration, what string) outcome {
	t.Helper()
	select {
	case o := <-res:
		return o
	case <-time.After(within):
		cancel()
		<-res
		t.Fatalf("%s: the blocked Obtain did not return within %v", what, within)
		return outcome{}
	}
}

// waitShardSubscribers waits until srv counts n subscribers of the shard
// channel ch (PUBSUB SHARDNUMSUB).
func waitShardSubscribers(t *testing.T, srv *redistest.Server, ch string, n int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		v, _ := srv.Exec(t, "PUBSUB", "SHARDNUMSUB", ch).([]any)
		return len(v) == 2 && v[1] == n
	}, 10*time.Second, 5*time.Millisecond, "%s: %d subscribers of %s", srv.Addr(), n, ch)
}

// wakeChannel is the channel a release of the lock named key (default
// prefix) publishes on.
func wakeChannel(key string) string { return "distlock:{" + key + "}:wake" }

// nodeCounts is what one node has counted: commands by name (INFO
// commandstats, which counts the commands scripts call too) and messages
// of the cluster bus by kind.
type nodeCounts struct {
	cmds map[string]int64
	bus  map[string]int64
}

var busCounters = []string{
	"cluster_stats_messages_publish_received",
	"cluster_stats_messages_publishshard_received",
}

func countAll(t *testing.T, nodes []*redistest.Server) []nodeCounts {
	t.Helper()
	counts := make([]nodeCounts, len(nodes))
	for i, n := range nodes {
		counts[i] = nodeCounts{cmds: n.CommandStats(t), bus: map[string]int64{}}
		for _, f := range busCounters {
			v, _ := strconv.ParseInt(n.ClusterInfo(t, f), 10, 64)
			counts[i].bus[f] = v
		}
	}
	return counts
}

// TestClusterWakeUpOnKeysShardOnly: on a Redis Cluster a release wakes the
// callers blocked on its key with SPUBLISH on the key's shard only, and
// they listen with SSUBSCRIBE there; nothing is broadcast.
//
//  1. A cluster of 3 masters with one replica each; the holder and the
//     waiter are Lockers on clients of their own (two processes).
//  2. 4 rounds: the holder obtains K; the waiter blocks on K (re-checking
//     only once a minute) until K's master counts its subscription; the
//     holder releases; the waiter obtains within wakeWithin (so it was
//     woken) and releases; its subscription ends.
//  3. INFO commandstats (which counts the commands scripts call) and
//     CLUSTER INFO of every node, before and after: SPUBLISH ran once per
//     release on K's master and on no other node, PUBLISH on none;
//     SSUBSCRIBE once per round on K's master and nowhere else, SUBSCRIBE
//     nowhere; no node received a PUBLISH over the cluster bus, and no node
//     outside K's shard a sharded one.
func TestClusterWakeUpOnKeysShardOnly(t *testing.T) {
	cl := redistest.StartClusterWithReplicas(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	holder := distlock.New(cl.Client(t))
	waiter := distlock.New(cl.Client(t))
	const key, rounds = "stock:sku1", 4
	ch := wakeChannel(key)
	shard := cl.Shard(int(distlock.KeySlot(ch)))
	master, replica := cl.Nodes[shard], cl.Replicas[shard]
	nodes := append(append([]*redistest.Server(nil), cl.Nodes...), cl.Replicas...)

	before := countAll(t, nodes)
	for round := range rounds {
		l, err := holder.Obtain(ctx, key, distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		wctx, wcancel := context.WithCancel(ctx)
		res := blockedObtain(wctx, waiter, key, onlyWakeUps...)
		waitShardSubscribers(t, master, ch, 1)
		released := time.Now()
		require.NoError(t, l.Release(ctx))
		o := awaitOutcome(t, res, wcancel, wakeWithin, "round "+strconv.Itoa(round))
		wcancel()
		require.NoError(t, o.err)
		t.Logf("round %d: woken %v after the release", round, o.at.Sub(released))
		require.NoError(t, o.l.Release(ctx))
		waitShardSubscribers(t, master, ch, 0)
	}
	after := countAll(t, nodes)

	for i, n := range nodes {
		delta := func(cmd string) int64 { return after[i].cmds[cmd] - before[i].cmds[cmd] }
		bus := func(f string) int64 { return after[i].bus[f] - before[i].bus[f] }
		wantPub, wantSub := int64(0), int64(0)
		if n == master {
			wantPub, wantSub = 2*rounds, rounds // the holder's and the waiter's releases
		}
		assert.Equal(t, wantPub, delta("spublish"), "%s: SPUBLISH calls", n.Addr())
		assert.Equal(t, wantSub, delta("ssubscribe"), "%s: SSUBSCRIBE calls", n.Addr())
		assert.Zero(t, delta("publish"), "%s: PUBLISH calls", n.Addr())
		assert.Zero(t, delta("subscribe"), "%s: SUBSCRIBE calls", n.Addr())
		assert.Zero(t, bus("cluster_stats_messages_publish_received"), "%s: PUBLISH broadcast over the cluster bus", n.Addr())
		if n != master && n != replica {
			assert.Zero(t, bus("cluster_stats_messages_publishshard_received"), "%s: sharded messages outside the key's shard", n.Addr())
		}
		t.Logf("%s: spublish %d, ssubscribe %d, publishshard received %d", n.Addr(), delta("spublish"), delta("ssubscribe"), bus("cluster_stats_messages_publishshard_received"))
	}
}
