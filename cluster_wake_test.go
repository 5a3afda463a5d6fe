package distlock_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// These tests follow the wake-ups of callers that barge (WithFairness(false)):
// their subscriptions, one channel per key, are what they count. Callers
// that wait their turn listen on the same sharded subscriptions, with a
// channel of their own besides (fair_test.go, TestFairOnACluster).

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
	holder := distlock.New(cl.Client(t), barging)
	waiter := distlock.New(cl.Client(t), barging)
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

// attemptSlack is what the move tests allow beyond ResubscribeBound for
// the client's reload of its slot map (go-redis: at most every 200ms) and
// the waiter's one attempt (a round trip, and a MOVED redirect after the
// slot moved), on a loaded machine under -race.
const attemptSlack = 500 * time.Millisecond

// shardSubscribers counts the subscribers of the shard channel ch on the
// running nodes among nodes, one count per node.
func shardSubscribers(t *testing.T, nodes []*redistest.Server, ch string) []int64 {
	t.Helper()
	counts := make([]int64, len(nodes))
	for i, n := range nodes {
		if n.Pid() == 0 {
			continue
		}
		if v, _ := n.Exec(t, "PUBSUB", "SHARDNUMSUB", ch).([]any); len(v) == 2 {
			counts[i], _ = v[1].(int64)
		}
	}
	return counts
}

// waitSubscribedIn waits until the shard channel ch has exactly one
// subscriber among the running nodes of nodes, and returns its index.
func waitSubscribedIn(t *testing.T, nodes []*redistest.Server, ch string) int {
	t.Helper()
	at := -1
	require.Eventually(t, func() bool {
		at = -1
		total := int64(0)
		for i, c := range shardSubscribers(t, nodes, ch) {
			total += c
			if c > 0 {
				at = i
			}
		}
		return total == 1
	}, 10*time.Second, 5*time.Millisecond, "one subscriber of %s", ch)
	return at
}

// holdAndBlock has holder obtain key (TTL a minute) and a waiter block on
// it with onlyWakeUps until nodes[at] counts the waiter's subscription;
// it returns the lock, the outcome channel and its cancel.
func holdAndBlock(t *testing.T, ctx context.Context, holder, waiter *distlock.Locker, key string, sub *redistest.Server) (*distlock.Lock, <-chan outcome, context.CancelFunc) {
	t.Helper()
	l, err := holder.Obtain(ctx, key, distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	wctx, wcancel := context.WithCancel(ctx)
	t.Cleanup(wcancel)
	res := blockedObtain(wctx, waiter, key, onlyWakeUps...)
	waitShardSubscribers(t, sub, wakeChannel(key), 1)
	return l, res, wcancel
}

// releaseAndAwait releases l and waits for the blocked waiter's outcome:
// it must have obtained within bound of the release. It releases the
// waiter's lock and returns how long the waiter took.
func releaseAndAwait(t *testing.T, ctx context.Context, l *distlock.Lock, res <-chan outcome, wcancel context.CancelFunc, bound time.Duration, what string) time.Duration {
	t.Helper()
	released := time.Now()
	require.NoError(t, l.Release(ctx), what)
	o := awaitOutcome(t, res, wcancel, wakeWithin+bound, what)
	require.NoError(t, o.err, what)
	took := o.at.Sub(released)
	t.Logf("%s: the waiter obtained %v after the release", what, took)
	assert.LessOrEqual(t, took, bound, "%s: woken too late", what)
	require.NoError(t, o.l.Release(ctx), what)
	return took
}

// TestClusterWakeUpAcrossFailover: a caller blocked on a key across a
// CLUSTER FAILOVER of the key's shard is still woken by the release after
// it.
//
//  1. A cluster of 3 masters with one replica each; the holder and the
//     waiter are Lockers on clients of their own. The waiter re-checks by
//     itself only once a minute.
//  2. The holder obtains K; the waiter blocks, subscribed on K's master.
//  3. CLUSTER FAILOVER on K's replica: the old master, now a replica,
//     drops the waiter's sharded subscription (an SUNSUBSCRIBE push).
//  4. The waiter's subscription comes back by itself on the new master
//     (not on the old one, which as a replica serves SSUBSCRIBE but, just
//     demoted, may not be sent the shard's messages yet); then the holder
//     releases: the waiter obtains within wakeWithin.
//  5. Again with a failover back, and the release at once after it, maybe
//     before the subscription is back: the waiter obtains within the
//     documented bound, ResubscribeBound (plus attemptSlack).
func TestClusterWakeUpAcrossFailover(t *testing.T) {
	cl := redistest.StartClusterWithReplicas(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	holder := distlock.New(cl.Client(t), barging)
	waiter := distlock.New(cl.Client(t), barging)
	const key = "stock:sku2"
	ch := wakeChannel(key)
	i := cl.Shard(int(distlock.KeySlot(ch)))

	l, res, wcancel := holdAndBlock(t, ctx, holder, waiter, key, cl.Nodes[i])
	cl.Failover(t, i, false)
	shard := []*redistest.Server{cl.Nodes[i], cl.Replicas[i]}
	// Not on the old master: as a replica just demoted it may not be sent
	// the shard's messages yet (a release was lost that way).
	assert.Equal(t, 0, waitSubscribedIn(t, shard, ch), "the subscription is not on the new master")
	releaseAndAwait(t, ctx, l, res, wcancel, wakeWithin, "release after the subscription came back")

	l, res, wcancel = holdAndBlock(t, ctx, holder, waiter, key, cl.Nodes[i])
	cl.Failover(t, i, false)
	releaseAndAwait(t, ctx, l, res, wcancel, distlock.ResubscribeBound+attemptSlack, "release at once after the failover")
}

// TestClusterWakeUpAcrossReshard: a subscription follows its slot when a
// reshard moves it to another master, whose old owner answers MOVED.
//
//  1. A cluster of 3 masters; holder and waiter on clients of their own.
//  2. The holder obtains K; the waiter blocks, subscribed on K's master A.
//  3. K's slot moves to master B (with K): A drops the subscription (an
//     SUNSUBSCRIBE push); the waiter's client, whose slot map still names
//     A, subscribes there again and gets MOVED, reloads and subscribes on
//     B.
//  4. B counts the subscription; the holder releases (its client follows
//     MOVED to B); the waiter obtains within wakeWithin.
//  5. The slot moves on to master C, and the holder releases at once: the
//     waiter obtains within ResubscribeBound (plus attemptSlack).
func TestClusterWakeUpAcrossReshard(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	holder := distlock.New(cl.Client(t), barging)
	waiter := distlock.New(cl.Client(t), barging)
	const key = "stock:sku3"
	ch := wakeChannel(key)
	slot := int(distlock.KeySlot(ch))
	a := cl.Shard(slot)
	b, c := (a+1)%3, (a+2)%3

	l, res, wcancel := holdAndBlock(t, ctx, holder, waiter, key, cl.Nodes[a])
	cl.MoveSlot(t, slot, b)
	assert.Equal(t, 0, waitSubscribedIn(t, []*redistest.Server{cl.Nodes[b], cl.Nodes[a], cl.Nodes[c]}, ch), "the subscription is not on the slot's new master")
	releaseAndAwait(t, ctx, l, res, wcancel, wakeWithin, "release after the subscription moved")

	l, res, wcancel = holdAndBlock(t, ctx, holder, waiter, key, cl.Nodes[b])
	cl.MoveSlot(t, slot, c)
	releaseAndAwait(t, ctx, l, res, wcancel, distlock.ResubscribeBound+attemptSlack, "release at once after the reshard")
	assert.Equal(t, []int64{0, 0, 0}, shardSubscribers(t, cl.Nodes, ch), "a subscription left behind")
}

// TestClusterWakeUpAcrossCrash: a caller blocked on a key whose master
// crashes is still woken by a release once the replica has taken over.
//
//  1. A cluster of 3 masters with one replica each; holder and waiter on
//     clients of their own, the waiter re-checking only once a minute.
//  2. The holder obtains K; the waiter blocks, subscribed on K's master.
//  3. K's master is killed (SIGKILL): the waiter's connection fails; its
//     notifier tries again and again (at most 1s apart, without waking
//     the waiter, whose attempt would fail against the dead node) while
//     the replica, after the node timeout, promotes itself.
//  4. Once every running node reports the cluster ok and the holder's
//     client has reloaded its slot map (it still routes K to the dead
//     node: go-redis reloads by itself only after a MOVED, or every 10s),
//     the holder releases (the lock was replicated before the crash): the
//     waiter obtains within ResubscribeBound (plus attemptSlack).
func TestClusterWakeUpAcrossCrash(t *testing.T) {
	cl := redistest.StartClusterWithReplicas(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hc := cl.Client(t)
	holder := distlock.New(hc, barging)
	waiter := distlock.New(cl.Client(t), barging)
	const key = "stock:sku4"
	i := cl.Shard(int(distlock.KeySlot(wakeChannel(key))))

	l, res, wcancel := holdAndBlock(t, ctx, holder, waiter, key, cl.Nodes[i])
	// The lock must be on the replica before the crash, or the release
	// after it finds nothing to release.
	require.EqualValues(t, 1, cl.Nodes[i].Exec(t, "WAIT", 1, 5000))
	cl.KillMaster(t, i)
	hc.ReloadState(ctx)
	require.Eventually(t, func() bool {
		_, err := l.TTL(ctx)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the holder's client does not reach the new master")
	releaseAndAwait(t, ctx, l, res, wcancel, distlock.ResubscribeBound+attemptSlack, "release after the crash and failover")
}

// TestClusterWakeUpWithoutShardedPubSub: on a Cluster whose servers lack
// sharded pub/sub (as before Redis 7.0; here SPUBLISH, SSUBSCRIBE and
// SUNSUBSCRIBE are renamed away), releases fall back to PUBLISH and
// waiters to SUBSCRIBE, and wake-ups still arrive.
//
//  1. A cluster of 3 masters without SPUBLISH, SSUBSCRIBE, SUNSUBSCRIBE;
//     holder and waiter on clients of their own.
//  2. 2 rounds: the holder obtains K, the waiter blocks (re-checking only
//     once a minute) until some node counts its plain subscription, the
//     holder releases: the waiter obtains within wakeWithin.
//  3. No wake-up was counted lost; PUBLISH ran once per release on K's
//     master.
func TestClusterWakeUpWithoutShardedPubSub(t *testing.T) {
	cl := redistest.StartClusterArgs(t, 3,
		"--rename-command", "SPUBLISH", "",
		"--rename-command", "SSUBSCRIBE", "",
		"--rename-command", "SUNSUBSCRIBE", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	holder := distlock.New(cl.Client(t), barging)
	waiter := distlock.New(cl.Client(t), barging)
	const key, rounds = "stock:sku5", 2
	ch := wakeChannel(key)
	master := cl.Nodes[cl.Shard(int(distlock.KeySlot(ch)))]
	before := master.CommandStats(t)
	for round := range rounds {
		l, err := holder.Obtain(ctx, key, distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		wctx, wcancel := context.WithCancel(ctx)
		res := blockedObtain(wctx, waiter, key, onlyWakeUps...)
		require.Eventually(t, func() bool {
			for _, n := range cl.Nodes {
				if v, _ := n.Exec(t, "PUBSUB", "NUMSUB", ch).([]any); len(v) == 2 && v[1] == int64(1) {
					return true
				}
			}
			return false
		}, 10*time.Second, 5*time.Millisecond, "a plain subscription of %s", ch)
		releaseAndAwait(t, ctx, l, res, wcancel, wakeWithin, "round "+strconv.Itoa(round))
		wcancel()
	}
	assert.Zero(t, holder.LostWakeups()+waiter.LostWakeups(), "wake-ups counted lost")
	assert.Equal(t, int64(2*rounds), master.CommandStats(t)["publish"]-before["publish"], "PUBLISH calls on the key's master")
}

// TestClusterOnceWakeUp: on a Redis Cluster, Once's finish wakes the
// callers waiting for the outcome with SPUBLISH on the key's shard.
//
//  1. A cluster of 3 masters; runner and waiter are Lockers on clients of
//     their own.
//  2. The runner's Once holds fn; the waiter's Once blocks (re-checking
//     only once an hour) until the key's master counts its subscription.
//  3. fn returns nil: the waiter returns ErrAlreadyDone within wakeWithin,
//     without running fn; the key's master ran one SPUBLISH, no node a
//     PUBLISH.
func TestClusterOnceWakeUp(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runner := distlock.New(cl.Client(t), barging)
	waiter := distlock.New(cl.Client(t), barging)
	const key = "cache:k"
	ch := wakeChannel(key)
	master := cl.Shard(int(distlock.KeySlot(ch)))
	before := countAll(t, cl.Nodes)

	started, finish := make(chan struct{}), make(chan struct{})
	errA := make(chan error, 1)
	go func() {
		errA <- runner.Once(ctx, key, time.Minute, func(context.Context) error {
			close(started)
			<-finish
			return nil
		})
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the runner's fn did not start")
	}
	errB := make(chan error, 1)
	go func() {
		errB <- waiter.Once(ctx, key, time.Minute, func(context.Context) error {
			return errors.New("the waiter ran fn after a success")
		}, distlock.WithBlocking(), distlock.WithRetry(distlock.LinearBackoff(time.Hour)))
	}()
	waitShardSubscribers(t, cl.Nodes[master], ch, 1)
	finished := time.Now()
	close(finish)
	require.NoError(t, <-errA)
	select {
	case err := <-errB:
		require.ErrorIs(t, err, distlock.ErrAlreadyDone)
		t.Logf("the waiter learnt the outcome %v after fn returned", time.Since(finished))
	case <-time.After(wakeWithin):
		cancel()
		<-errB
		t.Fatalf("the waiter did not learn the outcome within %v", wakeWithin)
	}
	after := countAll(t, cl.Nodes)
	for i, n := range cl.Nodes {
		want := int64(0)
		if i == master {
			want = 1
		}
		assert.Equal(t, want, after[i].cmds["spublish"]-before[i].cmds["spublish"], "%s: SPUBLISH calls", n.Addr())
		assert.Zero(t, after[i].cmds["publish"]-before[i].cmds["publish"], "%s: PUBLISH calls", n.Addr())
	}
}

// peerAddr is the local address of the forwarder's own connection to the
// target for accepted connection i: the client address the target sees.
func (b *blackhole) peerAddr(i int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peers[i].LocalAddr().String()
}

// TestClusterHalfOpenSubscriptionIsNoticed: the health check notices a
// sharded subscription connection that went half-open, within
// 2×healthInterval (2s), and its replacement wakes the waiter.
//
//  1. A cluster of 3 masters; the waiter's client reaches K's master
//     through a forwarder (its Dialer), the holder's directly. The waiter
//     re-checks by itself only once a minute.
//  2. The holder obtains K; the waiter blocks until K's master counts its
//     subscription; the forwarder's connection that carries it (the one
//     the master lists with ssub=1) starts swallowing every byte.
//  3. The holder releases: the SPUBLISH is lost on that connection.
//  4. The reader hears nothing, PINGs, hears nothing again: it gives the
//     connection up; the notifier subscribes on a new one, and the
//     confirmation wakes the waiter, which obtains within 2s plus slack
//     (for the confirmation and one attempt) of the release.
func TestClusterHalfOpenSubscriptionIsNoticed(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const key = "stock:sku6"
	ch := wakeChannel(key)
	master := cl.Nodes[cl.Shard(int(distlock.KeySlot(ch)))]
	bh := newBlackhole(t, master.Addr())
	waiter := distlock.New(cl.Client(t, func(o *redis.ClusterOptions) {
		o.ReadTimeout, o.WriteTimeout = 10*time.Second, 10*time.Second
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == master.Addr() {
				addr = bh.Addr()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}), barging)
	holder := distlock.New(cl.Client(t), barging)

	l, res, wcancel := holdAndBlock(t, ctx, holder, waiter, key, master)
	list, _ := master.Exec(t, "CLIENT", "LIST").(string)
	sub := -1
	for i := range bh.Conns() {
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " addr="+bh.peerAddr(i)+" ") && strings.Contains(line, " ssub=1 ") {
				sub = i
			}
		}
	}
	require.GreaterOrEqual(t, sub, 0, "no forwarded connection carries the subscription:\n%s", list)
	bh.Swallow(sub)
	releaseAndAwait(t, ctx, l, res, wcancel, 2*time.Second+slack, "release on a half-open subscription")
	assert.Greater(t, bh.Conns(), sub+1, "the subscription was not replaced")
}
