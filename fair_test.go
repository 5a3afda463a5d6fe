package distlock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// The options of fair and of barging Lockers in the tests.
var (
	fair    = distlock.WithFairness(true)
	barging = distlock.WithFairness(false)
	// noRecheck keeps a fair waiter from re-checking by itself (its
	// fallback re-check comes after a minute): it gets the lock by the turn
	// a release hands it, with the fence that release drew. A re-check
	// just before its turn's message would adopt the turn with a fence
	// drawn anew, one more than a test that counts fences expects.
	noRecheck = distlock.WithRetry(distlock.LinearBackoff(time.Minute))
)

// queueLen is the length of the queue of waiters of the lock named key.
func queueLen(t *testing.T, c *redis.Client, key string) int64 {
	t.Helper()
	n, err := c.LLen(context.Background(), "distlock:{"+key+"}:q").Result()
	require.NoError(t, err)
	return n
}

// waitQueued waits until n entries are queued for key.
func waitQueued(t *testing.T, c *redis.Client, key string, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return queueLen(t, c, key) == n }, waitTimeout, time.Millisecond,
		"want %d entries queued for %q", n, key)
}

// TestFairFIFOAcrossLockers: four Lockers, each on its own client (as four
// processes would be), queue one after the other for a held lock. Each
// gets the lock in the order it queued, one hand-over after the other:
// with fencing, the fences go up by one per turn, so no attempt of anyone
// came in between.
func TestFairFIFOAcrossLockers(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithFencing())
	require.NoError(t, err)

	const n = 4
	got := make([]<-chan obtained, n)
	for i := range n {
		lk := distlock.New(srv.Client(t), fair)
		got[i] = obtainAsync(ctx, lk, "k", distlock.WithFencing())
		waitQueued(t, admin, "k", int64(i+1))
	}
	require.NoError(t, l.Release(ctx))
	fence := l.Fence()
	for i := range n {
		o := waitObtained(t, got[i])
		assert.Equal(t, fence+1, o.l.Fence(), "waiter %d: fence", i)
		fence = o.l.Fence()
		for j := i + 1; j < n; j++ {
			select {
			case o := <-got[j]:
				t.Fatalf("waiter %d obtained before waiter %d released (err %v)", j, i, o.err)
			default:
			}
		}
		require.NoError(t, o.l.Release(ctx))
	}
}

// entryKeys returns the keys of the queue entries of the lock named key.
func entryKeys(t *testing.T, c *redis.Client, key string) []string {
	t.Helper()
	keys, err := c.Keys(context.Background(), "distlock:{"+key+"}:q:*").Result()
	require.NoError(t, err)
	return keys
}

// TestFairWaiterWhoseCtxEndsLeavesTheQueue: a queued waiter whose ctx
// ends takes its entry out of the queue (and its entry key with it), and
// the next release goes to the waiter behind it, not to the one that left.
func TestFairWaiterWhoseCtxEndsLeavesTheQueue(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)

	leaving := distlock.New(srv.Client(t), fair)
	lctx, lcancel := context.WithCancel(ctx)
	left := obtainAsync(lctx, leaving, "k")
	waitQueued(t, admin, "k", 1)
	staying := distlock.New(srv.Client(t), fair)
	got := obtainAsync(ctx, staying, "k")
	waitQueued(t, admin, "k", 2)

	lcancel()
	select {
	case o := <-left:
		require.ErrorIs(t, o.err, distlock.ErrNotObtained)
		require.ErrorIs(t, o.err, context.Canceled)
	case <-time.After(waitTimeout):
		t.Fatal("a waiter whose ctx ended did not return")
	}
	start := time.Now()
	waitQueued(t, admin, "k", 1)
	require.Len(t, entryKeys(t, admin, "k"), 1, "the entry key of the waiter that left")
	t.Logf("the entry left the queue %v after Obtain returned", time.Since(start))

	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)
	require.NoError(t, o.l.Release(ctx))
}

// TestFairOneEntryPerLocker: the blocked callers of one Locker share one
// queue entry and take their turns in the order they came, one hand-over
// each.
func TestFairOneEntryPerLocker(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithFencing())
	require.NoError(t, err)
	lk := distlock.New(srv.Client(t), fair)
	const n = 4
	got := make([]<-chan obtained, n)
	for i := range n {
		got[i] = obtainAsync(ctx, lk, "k", distlock.WithFencing())
		if i == 0 {
			waitQueued(t, admin, "k", 1)
		} else {
			require.Eventually(t, func() bool { return distlock.Waiting(lk, "k") == i+1 }, waitTimeout, time.Millisecond)
		}
	}
	assert.EqualValues(t, 1, queueLen(t, admin, "k"), "entries for one Locker")
	require.NoError(t, l.Release(ctx))
	fence := l.Fence()
	for i := range n {
		o := waitObtained(t, got[i])
		assert.Equal(t, fence+1, o.l.Fence(), "caller %d", i)
		fence = o.l.Fence()
		require.NoError(t, o.l.Release(ctx))
	}
}

// TestFairUncontendedIsPlain: with nobody waiting, a fair Obtain and
// Release cost what they cost without fairness: SET NX, then one release
// script, which finds no queue; nothing is queued and nothing subscribed.
func TestFairUncontendedIsPlain(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t), fair)
	warm, err := lk.Obtain(ctx, "warm", distlock.WithBlocking())
	require.NoError(t, err)
	require.NoError(t, warm.Release(ctx)) // loads the release script
	srv.Exec(t, "CONFIG", "RESETSTAT")
	l, err := lk.Obtain(ctx, "k", distlock.WithBlocking())
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
	st := srv.CommandStats(t)
	for _, c := range []string{"config|resetstat", "hello", "client|setinfo", "info", "ping"} {
		delete(st, c) // the test's own, and connection set-up
	}
	assert.Equal(t, map[string]int64{"set": 1, "evalsha": 1, "get": 1, "lmove": 1, "del": 1, "publish": 1}, st)
}

// TestFairTurnOfAnIdleEntryIsGivenBack: a Locker whose last caller got
// the lock keeps its entry queued for a while, for its next caller. A turn
// that comes to it while none of its callers waits is given back at once
// and goes to the next waiter; the idle entry leaves the queue.
func TestFairTurnOfAnIdleEntryIsGivenBack(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair)
	idle := distlock.New(srv.Client(t), fair)
	other := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)
	got := obtainAsync(ctx, idle, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	waitQueued(t, admin, "k", 1)
	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)
	require.NoError(t, o.l.Release(ctx)) // freed: nobody else waits
	assert.EqualValues(t, 1, queueLen(t, admin, "k"), "the idle entry lingers")

	l, err = holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)
	got = obtainAsync(ctx, other, "k", distlock.WithTTL(time.Minute), distlock.WithFencing(), noRecheck)
	waitQueued(t, admin, "k", 2)
	released := time.Now()
	require.NoError(t, l.Release(ctx)) // to the idle entry first, which gives it back
	o = waitObtained(t, got)
	assert.Equal(t, l.Fence()+2, o.l.Fence(), "a turn went to the idle entry (drawing a fence) before this one")
	assert.Less(t, o.at.Sub(released), time.Second)
	t.Logf("the waiter behind an idle entry got the lock %v after the release", o.at.Sub(released))
	require.Eventually(t, func() bool { return queueLen(t, admin, "k") == 1 }, waitTimeout, time.Millisecond,
		"the idle entry left")
	require.NoError(t, o.l.Release(ctx))
}

// TestRedlockRefusesFairness: a quorum of queues gives no one order, so a
// Redlock barges: WithFairness(true) given to NewRedlock or to a call is
// refused; WithFairness(false) is accepted.
func TestRedlockRefusesFairness(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	ctx := context.Background()
	_, err := newRL(t, srvs, fair).Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrInvalidArgument)
	r := newRL(t, srvs, distlock.WithFairness(false))
	_, err = r.Obtain(ctx, "k", fair, distlock.WithBlocking())
	require.ErrorIs(t, err, distlock.ErrInvalidArgument)
	l, err := r.Obtain(ctx, "k", distlock.WithFairness(false), distlock.WithBlocking())
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
	l, err = newRL(t, srvs).Obtain(ctx, "k", distlock.WithBlocking())
	require.NoError(t, err, "the default on a Redlock")
	require.NoError(t, l.Release(ctx))
}

// TestFairMutualExclusionUnderHeavyContention: 16 blocked callers in four
// fair Lockers, plus callers that barge in with SET NX and a short retry
// and callers whose ctx ends while they wait (leaving the queue), all on
// one key: no two holders overlap and no update is lost.
func TestFairMutualExclusionUnderHeavyContention(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		var obtainers []obtainFunc
		for i := 0; i < 4; i++ {
			lk := distlock.New(srv.Client(t), append(opts, fair)...)
			obtainers = append(obtainers, func(ctx context.Context) (*distlock.Lock, error) {
				ctx, cancel := context.WithTimeout(ctx, 3*waitTimeout)
				defer cancel()
				return lk.Obtain(ctx, "hot", distlock.WithBlocking(), distlock.WithTTL(5*time.Second), distlock.WithFencing())
			})
		}
		barger := distlock.New(srv.Client(t), opts...)
		obtainers = append(obtainers, func(ctx context.Context) (*distlock.Lock, error) {
			ctx, cancel := context.WithTimeout(ctx, 3*waitTimeout)
			defer cancel()
			return barger.Obtain(ctx, "hot", distlock.WithRetry(distlock.LinearBackoff(time.Millisecond)), distlock.WithTTL(5*time.Second))
		})
		quitter := distlock.New(srv.Client(t), append(opts, fair)...)
		obtainers = append(obtainers, func(ctx context.Context) (*distlock.Lock, error) {
			for {
				qctx, cancel := context.WithTimeout(ctx, 2*time.Millisecond)
				l, err := quitter.Obtain(qctx, "hot", distlock.WithBlocking(), distlock.WithTTL(5*time.Second))
				cancel()
				if !errors.Is(err, distlock.ErrNotObtained) {
					return l, err
				}
			}
		})
		t.Logf("longest wait: %v", hammer(t, srv.Client(t), obtainers, 4, 20))
	})
}

// TestFairOnACluster: on a Redis Cluster every key of a lock's queue
// shares the lock's slot (whatever the key holds), so the scripts run
// there; the waiters take their turns in order. A Cluster does not count
// subscribers across nodes, so the liveness of an entry is its expiry
// alone.
func TestFairOnACluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	for _, key := range []string{"plain", "user:{42}", "}{", "日本{語}"} {
		holder := distlock.New(cl.Client(t), fair)
		l, err := holder.Obtain(ctx, key, distlock.WithFencing())
		require.NoError(t, err, key)
		const n = 3
		got := make([]<-chan obtained, n)
		admin := cl.Client(t)
		for i := range n {
			got[i] = obtainAsync(ctx, distlock.New(cl.Client(t), fair), key, distlock.WithFencing())
			rk := "distlock:{" + strings.NewReplacer("{", "%7B", "}", "%7D").Replace(key) + "}"
			require.Eventually(t, func() bool {
				m, err := admin.LLen(ctx, rk+":q").Result()
				require.NoError(t, err)
				return m == int64(i+1)
			}, waitTimeout, time.Millisecond, "%q: %d queued", key, i+1)
			if i == n-1 {
				var mu sync.Mutex
				var keys []string
				require.NoError(t, admin.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
					k, err := c.Keys(ctx, rk+"*").Result()
					mu.Lock()
					keys = append(keys, k...)
					mu.Unlock()
					return err
				}))
				require.Len(t, keys, 3+n, "lock, fence, queue and %d entries: %q", n, keys)
				for _, k := range keys {
					assert.Equal(t, distlock.KeySlot(rk), distlock.KeySlot(k), "%q", k)
				}
			}
		}
		require.NoError(t, l.Release(ctx))
		fence := l.Fence()
		for i := range n {
			o := waitObtained(t, got[i])
			assert.Equal(t, fence+1, o.l.Fence(), "%q: waiter %d", key, i)
			fence = o.l.Fence()
			require.NoError(t, o.l.Release(ctx))
		}
	}
}

// TestFairLongWaitKeepsItsPlace: a waiter that waits longer than its
// entry would live unrefreshed (2s) keeps its entry: the Locker refreshes
// it, and the release hands the lock straight to it.
//
// Before the fix nothing woke the Locker's refresher when its entry was
// queued: the entry expired after 2s, the release freed the lock instead,
// and the waiter only noticed at its fallback re-check.
func TestFairLongWaitKeepsItsPlace(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	l, err := distlock.New(srv.Client(t), fair).Obtain(ctx, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)
	// No fallback re-check during the test: only the hand-over can wake it.
	got := obtainAsync(ctx, distlock.New(srv.Client(t), fair), "k", distlock.WithTTL(time.Minute), distlock.WithFencing(),
		distlock.WithRetry(distlock.LinearBackoff(time.Minute)))
	waitQueued(t, admin, "k", 1)
	time.Sleep(5 * time.Second) // the wait being tested: longer than an entry lives unrefreshed
	require.Len(t, entryKeys(t, admin, "k"), 1, "the waiter's entry")
	released := time.Now()
	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)
	assert.Less(t, o.at.Sub(released), time.Second)
	assert.Equal(t, l.Fence()+1, o.l.Fence())
	require.NoError(t, o.l.Release(ctx))
}

// TestFairStaleReleaseLeavesTheQueue: the release of a lock that is no
// longer the releaser's (it expired and was taken) reports the loss and
// leaves the queue as it was: the head it looked at goes back first.
func TestFairStaleReleaseLeavesTheQueue(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	stale, err := distlock.New(srv.Client(t), fair).Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, admin.Set(ctx, rlKey("k"), "someone-else", time.Minute).Err()) // taken over
	var got []<-chan obtained
	for i := range 2 {
		got = append(got, obtainAsync(ctx, distlock.New(srv.Client(t), fair), "k"))
		waitQueued(t, admin, "k", int64(i+1))
	}
	before, err := admin.LRange(ctx, "distlock:{k}:q", 0, -1).Result()
	require.NoError(t, err)
	require.ErrorIs(t, stale.Release(ctx), distlock.ErrNotHeld)
	after, err := admin.LRange(ctx, "distlock:{k}:q", 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, before, after)
	assert.Equal(t, "someone-else", rlGet(t, srv, rlKey("k")))
	// The lock's TTL runs out: the first waiter takes it at its re-check.
	require.NoError(t, admin.PExpire(ctx, rlKey("k"), 50*time.Millisecond).Err())
	o := waitObtained(t, got[0])
	require.NoError(t, o.l.Release(ctx))
	o = waitObtained(t, got[1])
	require.NoError(t, o.l.Release(ctx))
}

// TestFairUnheardTurnOfAnIdleEntryIsGivenBack: a Locker whose blocked
// callers all got the lock keeps its entry queued for a while; a turn
// handed to it whose message is lost (its subscription broke) is found
// when the subscription is back, and given back: the lock does not stay
// with nobody until its TTL.
func TestFairUnheardTurnOfAnIdleEntryIsGivenBack(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	id, heir := turnToASecondLocker(t, ctx, srv, admin)
	require.NoError(t, heir.Release(ctx)) // its entry lingers, idle
	require.EqualValues(t, 1, queueLen(t, admin, "k"), "the idle entry lingers")

	// A turn handed to the idle entry, whose message is lost.
	require.NoError(t, admin.Set(ctx, rlKey("k"), id+".unheard", time.Minute).Err())
	start := time.Now()
	_, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return rlGet(t, srv, rlKey("k")) == "" }, waitTimeout, time.Millisecond,
		"the unheard turn was given back")
	t.Logf("given back %v after the subscription broke", time.Since(start))
}

// TestFairHeldTurnSurvivesResubscribe: a Locker's entry lingers while the
// caller that got its turn holds the lock, whose value then starts with
// the entry's id, like a turn that went unheard. When the subscription
// breaks and comes back, the look for unheard turns leaves that lock
// alone. Before the fix it gave the lock back under its holder: the
// reliability checker saw two holders at once with connections dropped.
func TestFairHeldTurnSurvivesResubscribe(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	_, heir := turnToASecondLocker(t, ctx, srv, admin) // its entry lingers, idle
	require.EqualValues(t, 1, queueLen(t, admin, "k"), "the idle entry lingers")
	value := rlGet(t, srv, rlKey("k"))

	_, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return wakeChannels(t, admin, "k") > 0 }, waitTimeout, time.Millisecond,
		"the subscription is back")
	time.Sleep(200 * time.Millisecond) // the look for unheard turns runs now
	assert.Equal(t, value, rlGet(t, srv, rlKey("k")), "the held lock was given back under its holder")
	require.NoError(t, heir.Release(ctx))
}

// turnToASecondLocker has one Locker take "k" and a second one queue for
// it; the first releases, and the second gets the lock by its turn. It
// returns the second's queue entry id and its Lock.
func turnToASecondLocker(t *testing.T, ctx context.Context, srv *redistest.Server, admin *redis.Client) (string, *distlock.Lock) {
	t.Helper()
	holder := distlock.New(srv.Client(t), fair)
	heir := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	got := obtainAsync(ctx, heir, "k", distlock.WithTTL(time.Minute))
	waitQueued(t, admin, "k", 1)
	id, err := admin.LIndex(ctx, rlKey("k")+":q", 0).Result()
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
	return id, waitObtained(t, got).l
}
