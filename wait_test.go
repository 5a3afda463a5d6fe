package distlock_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// scriptCalls counts the lock scripts run (attempts of blocked callers,
// releases, refreshes) in INFO commandstats: EVALSHA and EVAL. (Commands
// that scripts call are counted under their own names, so SET and GET
// counts would mix both.)
func scriptCalls(t *testing.T, srv *redistest.Server) int64 {
	st := srv.CommandStats(t)
	return st["evalsha"] + st["eval"]
}

// obtainAsync runs a blocking Obtain in a goroutine and reports the lock
// and when Obtain returned.
type obtained struct {
	l   *distlock.Lock
	err error
	at  time.Time
}

func obtainAsync(ctx context.Context, lk obtainer, key string, opts ...distlock.Option) <-chan obtained {
	ch := make(chan obtained, 1)
	obtainInto(ch, ctx, lk, key, opts...)
	return ch
}

// obtainer is a Locker or a Redlock.
type obtainer interface {
	Obtain(ctx context.Context, key string, opts ...distlock.Option) (*distlock.Lock, error)
}

// obtainInto runs a blocking Obtain in a goroutine and sends its outcome to
// ch, which must have room for it.
func obtainInto(ch chan<- obtained, ctx context.Context, lk obtainer, key string, opts ...distlock.Option) {
	go func() {
		l, err := lk.Obtain(ctx, key, append([]distlock.Option{distlock.WithBlocking()}, opts...)...)
		ch <- obtained{l, err, time.Now()}
	}()
}

// bothModes runs f with blocked callers that barge and with callers that
// wait their turn (WithFairness).
func bothModes(t *testing.T, f func(t *testing.T, mode distlock.Option)) {
	for _, fair := range []bool{false, true} {
		t.Run(fmt.Sprintf("fair=%v", fair), func(t *testing.T) { f(t, distlock.WithFairness(fair)) })
	}
}

// wakeChannels is the number of channels of the lock named key that someone
// listens on: its wake-up channel, or a queue entry's channel.
func wakeChannels(t *testing.T, c *redis.Client, key string) int {
	t.Helper()
	chs, err := c.PubSubChannels(context.Background(), "distlock:{"+key+"}:wake*").Result()
	require.NoError(t, err)
	return len(chs)
}

func waitObtained(t *testing.T, ch <-chan obtained) obtained {
	t.Helper()
	select {
	case o := <-ch:
		require.NoError(t, o.err)
		return o
	case <-time.After(waitTimeout):
		t.Fatal("blocked Obtain did not return")
	}
	return obtained{}
}

func TestWaiterIsWokenByReleaseWithoutPolling(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder, waiter := distlock.New(srv.Client(t)), distlock.New(srv.Client(t))
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)

	before := scriptCalls(t, srv)
	got := obtainAsync(ctx, waiter, "k")
	time.Sleep(3 * time.Second) // the wait being measured
	during := scriptCalls(t, srv) - before
	// First attempt, the retry after subscribing, and fallback re-checks
	// (200ms doubling to 2s, jittered): a handful, not a poll loop.
	assert.LessOrEqual(t, during, int64(10), "lock commands from one waiter blocked 3s")
	t.Logf("lock commands during a 3s wait: %d", during)

	released := time.Now()
	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)
	assert.Less(t, o.at.Sub(released), 50*time.Millisecond, "hand-off after release")
	t.Logf("obtained %v after the release call began", o.at.Sub(released))
	require.NoError(t, o.l.Release(ctx))
}

func TestWaiterObtainsWhenHolderExpires(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	holder, waiter := distlock.New(srv.Client(t)), distlock.New(srv.Client(t))
	const ttl = 1500 * time.Millisecond
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(ttl))
	require.NoError(t, err)
	expires := time.Now().Add(ttl)
	got := obtainAsync(ctx, waiter, "k")
	o := waitObtained(t, got)
	// Expiry publishes nothing; the wait is capped by the holder's TTL.
	late := o.at.Sub(expires)
	assert.Less(t, late, 100*time.Millisecond, "obtained long after the holder expired")
	assert.Greater(t, late, -50*time.Millisecond, "obtained before the holder expired")
	t.Logf("obtained %v after the holder's expiry", late)
	require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)
	require.NoError(t, o.l.Release(ctx))
}

func TestKilledSubscriptionDoesNotStrandWaiters(t *testing.T) {
	bothModes(t, func(t *testing.T, mode distlock.Option) {
		srv := redistest.Start(t)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		admin := srv.Client(t)
		holder, waiter := distlock.New(srv.Client(t), mode), distlock.New(srv.Client(t), mode)
		l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		got := obtainAsync(ctx, waiter, "k", distlock.WithRetry(distlock.LinearBackoff(time.Minute)))

		// Wait until the waiter's subscription exists, then kill it. A
		// fair waiter listens on its turns' channel and on the key's.
		want := 1
		if mode == fair {
			want = 2
		}
		require.Eventually(t, func() bool { return wakeChannels(t, admin, "k") == want }, waitTimeout, 5*time.Millisecond)
		killed, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		require.NoError(t, err)
		require.EqualValues(t, 1, killed)
		// The subscription comes back by itself.
		require.Eventually(t, func() bool { return wakeChannels(t, admin, "k") == want }, waitTimeout, 5*time.Millisecond,
			"subscription not restored")

		released := time.Now()
		require.NoError(t, l.Release(ctx))
		// The fallback is a minute, so only a wake-up (or a turn) can make
		// this prompt.
		o := waitObtained(t, got)
		assert.Less(t, o.at.Sub(released), time.Second)
		require.NoError(t, o.l.Release(ctx))
	})
}

// TestSubscriptionClosesWhenNobodyWaits: the callers of one Locker
// blocked on a key share one subscription, closed once nobody waits (after
// entryLinger, 1s, when they waited their turn).
func TestSubscriptionClosesWhenNobodyWaits(t *testing.T) {
	bothModes(t, func(t *testing.T, mode distlock.Option) {
		srv := redistest.Start(t)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		admin := srv.Client(t)
		lk := distlock.New(srv.Client(t), mode)
		l, err := lk.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		results := make(chan obtained, 3)
		for i := 0; i < 3; i++ {
			obtainInto(results, ctx, lk, "k")
		}
		want := 1 // a fair Locker listens on its place's channel and the key's
		if mode == fair {
			want = 2
		}
		require.Eventually(t, func() bool { return distlock.Parked(lk, "k") && wakeChannels(t, admin, "k") == want },
			waitTimeout, 5*time.Millisecond, "one shared subscription for three waiters")
		require.NoError(t, l.Release(ctx))
		for i := 0; i < 3; i++ {
			o := waitObtained(t, results)
			require.NoError(t, o.l.Release(ctx))
		}
		require.Eventually(t, func() bool {
			list, err := admin.ClientList(ctx).Result()
			return err == nil && !strings.Contains(list, "sub=1")
		}, waitTimeout, 5*time.Millisecond, "subscription left open with nobody waiting")
	})
}

func TestWaitersOfOneLockerAreCoalesced(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t))
	waiter := distlock.New(srv.Client(t))
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)

	const n = 16
	results := make(chan obtained, n)
	for i := 0; i < n; i++ {
		obtainInto(results, ctx, waiter, "k")
	}
	time.Sleep(200 * time.Millisecond) // let them all queue
	before := scriptCalls(t, srv)
	// Hand the lock through all 16 waiters: each release wakes them, but
	// only the head of the queue sends an attempt.
	require.NoError(t, l.Release(ctx))
	for i := 0; i < n; i++ {
		o := waitObtained(t, results)
		require.NoError(t, o.l.Release(ctx))
	}
	used := scriptCalls(t, srv) - before
	// 16 acquisitions + 16 releases; without coalescing each release would
	// trigger an attempt from every remaining waiter (~16×15/2 more).
	assert.LessOrEqual(t, used, int64(2*n+n/2), "lock commands for %d hand-offs", n)
	t.Logf("lock commands for %d hand-offs inside one Locker: %d", n, used)
}

func TestMutualExclusionUnderHeavyContention(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		var obtainers []obtainFunc
		for i := 0; i < 4; i++ {
			lk := distlock.New(srv.Client(t), opts...)
			obtainers = append(obtainers, func(ctx context.Context) (*distlock.Lock, error) {
				ctx, cancel := context.WithTimeout(ctx, 3*waitTimeout)
				defer cancel()
				return lk.Obtain(ctx, "hot", distlock.WithBlocking(), distlock.WithTTL(5*time.Second))
			})
		}
		t.Logf("longest wait: %v", hammer(t, srv.Client(t), obtainers, 6, 20))
	})
}

func TestRedlockWaiterIsWokenByRelease(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder, waiter := newRL(t, srvs), newRL(t, srvs)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)

	before := make([]int64, len(srvs))
	for i, s := range srvs {
		before[i] = scriptCalls(t, s)
	}
	got := obtainAsync(ctx, waiter, "k")
	time.Sleep(2 * time.Second) // the wait being measured
	for i, s := range srvs {
		during := scriptCalls(t, s) - before[i]
		assert.LessOrEqual(t, during, int64(8), "lock scripts on node %d from one waiter blocked 2s", i)
	}
	released := time.Now()
	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)
	assert.Less(t, o.at.Sub(released), 100*time.Millisecond, "hand-off after release")
	t.Logf("Redlock waiter obtained %v after the release call began", o.at.Sub(released))
	require.NoError(t, o.l.Release(ctx))
}

func TestRedlockMutualExclusionUnderContention(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	var obtainers []obtainFunc
	for i := 0; i < 3; i++ {
		rl := newRL(t, srvs)
		obtainers = append(obtainers, func(ctx context.Context) (*distlock.Lock, error) {
			ctx, cancel := context.WithTimeout(ctx, 6*waitTimeout)
			defer cancel()
			return rl.Obtain(ctx, "hot", distlock.WithBlocking(), distlock.WithTTL(5*time.Second))
		})
	}
	hammer(t, srvs[0].Client(t), obtainers, 4, 10)
}

func TestReleaseHandsOverToAWaiterOfTheSameLocker(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	client := srv.Client(t)
	// Barging: the hand-over inside a Locker (with fair waiting, the turn
	// goes to the queue's head, whichever process it is in).
	local, remote := distlock.New(srv.Client(t), barging), distlock.New(srv.Client(t), barging)
	// A first hand-over on another key loads the scripts into Redis, so
	// that the count below has no NOSCRIPT fallback in it.
	warm, err := local.Obtain(ctx, "warm", distlock.WithFencing())
	require.NoError(t, err)
	warmGot := obtainAsync(ctx, local, "warm", distlock.WithFencing())
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, warm.Release(ctx))
	require.NoError(t, waitObtained(t, warmGot).l.Release(ctx))

	held, err := local.Obtain(ctx, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)

	localGot := obtainAsync(ctx, local, "k", distlock.WithFencing(), distlock.WithTTL(time.Minute))
	remoteGot := obtainAsync(ctx, remote, "k", distlock.WithFencing(), distlock.WithTTL(time.Minute))
	// Both are queued and subscribed.
	require.Eventually(t, func() bool {
		n, _ := client.PubSubNumSub(ctx, "distlock:{k}:wake").Result()
		return n["distlock:{k}:wake"] == 2
	}, waitTimeout, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // let both heads park after their retry

	before := scriptCalls(t, srv)
	require.NoError(t, held.Release(ctx))
	o := waitObtained(t, localGot)
	// One script: the hand-over. The waiter sent nothing of its own.
	assert.EqualValues(t, 1, scriptCalls(t, srv)-before, "scripts for a hand-over")
	assert.Greater(t, o.l.Fence(), held.Fence())
	got, err := client.Get(ctx, "distlock:{k}").Result()
	require.NoError(t, err)
	assert.Equal(t, distlock.StoredValue(o.l), got)
	select {
	case r := <-remoteGot:
		t.Fatalf("the remote waiter obtained a lock that was handed over: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	// With no waiter of its own left, the next release frees the lock and
	// wakes the other process.
	released := time.Now()
	require.NoError(t, o.l.Release(ctx))
	r := waitObtained(t, remoteGot)
	assert.Less(t, r.at.Sub(released), time.Second)
	assert.Greater(t, r.l.Fence(), o.l.Fence())
	require.NoError(t, r.l.Release(ctx))
}

func TestHandOversDoNotStarveOtherProcesses(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	// Barging: the bound on hand-overs inside a Locker.
	busy, other := distlock.New(srv.Client(t), barging), distlock.New(srv.Client(t), barging)
	// Four goroutines of one Locker take the lock in turn, handing it over
	// to each other.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sections atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, err := busy.Obtain(ctx, "k", distlock.WithBlocking())
				if err != nil {
					t.Error(err)
					return
				}
				sections.Add(1)
				// Hold it a moment, so the next in line is parked by the
				// release and the lock is handed over.
				time.Sleep(time.Millisecond)
				if err := l.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	require.Eventually(t, func() bool { return sections.Load() > 50 }, waitTimeout, time.Millisecond)

	// Another process's waiter gets its turn soon: every few hand-overs the
	// lock is released for everyone.
	start := sections.Load()
	octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
	defer ocancel()
	l, err := other.Obtain(octx, "k", distlock.WithBlocking())
	require.NoError(t, err, "starved while another Locker handed the lock around")
	t.Logf("the other process waited %d critical sections", sections.Load()-start)
	require.NoError(t, l.Release(ctx))
}
