package distlock_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
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

// rlNodeTimeout is the per-node timeout of the Redlocks in these tests:
// long enough for a loaded machine running the race detector to answer in
// time (answers taking 50ms were seen), short against the waits the tests
// allow.
const rlNodeTimeout = 200 * time.Millisecond

// newRL returns a Redlock over srvs, with its own clients and rlNodeTimeout
// (opts may override it).
func newRL(t *testing.T, srvs []*redistest.Server, opts ...distlock.Option) *distlock.Redlock {
	t.Helper()
	return distlock.NewRedlock(rlClients(t, srvs), append([]distlock.Option{distlock.WithNodeTimeout(rlNodeTimeout)}, opts...)...)
}

// rlClients returns one client per server. Their read and write timeouts
// are short so that a paused node ties up the commands queued behind it on
// its client only briefly.
func rlClients(t *testing.T, srvs []*redistest.Server) []redis.UniversalClient {
	t.Helper()
	return rlClientsTimeout(t, srvs, 300*time.Millisecond)
}

func rlClientsTimeout(t *testing.T, srvs []*redistest.Server, d time.Duration) []redis.UniversalClient {
	t.Helper()
	clients := make([]redis.UniversalClient, len(srvs))
	for i, s := range srvs {
		clients[i] = s.Client(t, func(o *redis.Options) {
			o.DialTimeout, o.ReadTimeout, o.WriteTimeout = d, d, d
		})
	}
	return clients
}

// rlModes runs f with pipelining on and off, each on its own n nodes.
func rlModes(t *testing.T, n int, f func(t *testing.T, srvs []*redistest.Server, mode distlock.Option)) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			f(t, redistest.StartN(t, n), distlock.WithPipelining(pipelining))
		})
	}
}

// rlGet returns the value of key on srv, "" when it does not exist.
func rlGet(t *testing.T, srv *redistest.Server, key string) string {
	t.Helper()
	v, _ := srv.Exec(t, "GET", key).(string)
	return v
}

// rlKey is the Redis key of the lock named key under the default prefix.
func rlKey(key string) string { return "distlock:{" + key + "}" }

func pause(t *testing.T, srvs ...*redistest.Server) {
	t.Helper()
	for _, s := range srvs {
		s.Pause(t)
	}
}

func resume(t *testing.T, srvs ...*redistest.Server) {
	t.Helper()
	for _, s := range srvs {
		s.Resume(t)
	}
}

// TestRedlockMutualExclusion: two Redlocks (one pipelined, one with plain
// calls) over the same five nodes, several goroutines each, blocking
// obtains, a read-modify-write counter in Redis: no two holders overlap and
// no update is lost.
func TestRedlockMutualExclusion(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	counter := srvs[0].Client(t)
	locks := []*distlock.Redlock{
		newRL(t, srvs, distlock.WithTTL(5*time.Second)),
		newRL(t, srvs, distlock.WithTTL(5*time.Second), distlock.WithPipelining(false)),
	}
	const workers, rounds = 3, 10
	var inside, overlaps atomic.Int32
	errs := make(chan error, len(locks)*workers)
	var wg sync.WaitGroup
	for _, rl := range locks {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- func() error {
					for range rounds {
						l, err := rl.Obtain(ctx, "counter", distlock.WithBlocking())
						if err != nil {
							return err
						}
						if inside.Add(1) != 1 {
							overlaps.Add(1)
						}
						n, err := counter.Get(ctx, "n").Int()
						if err != nil && !errors.Is(err, redis.Nil) {
							return err
						}
						// One more round trip widens the window a broken lock
						// would lose an update in.
						if err := counter.Ping(ctx).Err(); err != nil {
							return err
						}
						if err := counter.Set(ctx, "n", n+1, 0).Err(); err != nil {
							return err
						}
						inside.Add(-1)
						if err := l.Release(ctx); err != nil {
							return err
						}
					}
					return nil
				}()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Zero(t, overlaps.Load(), "holders overlapped")
	n, err := counter.Get(ctx, "n").Int()
	require.NoError(t, err)
	assert.Equal(t, len(locks)*workers*rounds, n, "lost updates")
}

// TestRedlockMinorityPaused: with 2 of 5 nodes stopped, obtain, refresh, TTL
// and release work, and obtain returns after about the node timeout, not
// at the ctx deadline.
func TestRedlockMinorityPaused(t *testing.T) {
	rlModes(t, 5, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		rl := newRL(t, srvs, mode)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pause(t, srvs[3], srvs[4])
		defer resume(t, srvs[3], srvs[4])

		for round := range 2 { // the second round runs with the paused nodes known to be slow
			start := time.Now()
			l, err := rl.Obtain(ctx, "k", distlock.WithTTL(10*time.Second))
			elapsed := time.Since(start)
			require.NoError(t, err, "round %d", round)
			assert.Less(t, elapsed, 10*rlNodeTimeout, "round %d: obtain waited far beyond the node timeout", round)
			for _, s := range srvs[:3] {
				assert.Equal(t, distlock.StoredValue(l), rlGet(t, s, rlKey("k")), "round %d: lock on %s", round, s.Addr())
			}

			require.NoError(t, l.Refresh(ctx, 20*time.Second), "round %d", round)
			ttl, err := l.TTL(ctx)
			require.NoError(t, err, "round %d", round)
			assert.Greater(t, ttl, 10*time.Second, "round %d: TTL after refresh", round)
			assert.LessOrEqual(t, ttl, 20*time.Second, "round %d", round)

			require.NoError(t, l.Release(ctx), "round %d", round)
			require.NoError(t, l.Err(), "round %d", round)
			for _, s := range srvs[:3] {
				assert.Empty(t, rlGet(t, s, rlKey("k")), "round %d: lock left on %s", round, s.Addr())
			}
		}
	})
}

// TestRedlockMajorityPaused: with 3 of 5 nodes stopped, obtain fails after
// about the node timeout, even when blocking, with an error that carries
// each node's timeout and does not claim contention; the key is given back
// on the nodes that took it.
func TestRedlockMajorityPaused(t *testing.T) {
	rlModes(t, 5, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		rl := newRL(t, srvs, mode)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pause(t, srvs[2], srvs[3], srvs[4])
		defer resume(t, srvs[2], srvs[3], srvs[4])

		for _, opts := range [][]distlock.Option{nil, {distlock.WithBlocking()}, {distlock.WithFencing()}} {
			start := time.Now()
			_, err := rl.Obtain(ctx, "k", opts...)
			elapsed := time.Since(start)
			require.Error(t, err, "opts %v", opts)
			assert.Less(t, elapsed, 10*rlNodeTimeout, "opts %v: did not fail fast", opts)
			assert.NotErrorIs(t, err, distlock.ErrNotObtained, "opts %v: node failures disguised as contention", opts)
			assert.NotErrorIs(t, err, context.DeadlineExceeded, "opts %v: the caller's ctx did not end", opts)
			assert.ErrorIs(t, err, distlock.ErrNodeTimeout, "opts %v", opts)
			assert.Contains(t, err.Error(), `obtain "k"`)

			var qe *distlock.QuorumError
			require.ErrorAs(t, err, &qe, "opts %v", opts)
			assert.Equal(t, 5, qe.Nodes)
			assert.Equal(t, 3, qe.Quorum)
			assert.Equal(t, 2, qe.OK)
			assert.Zero(t, qe.Refused)
			require.Len(t, qe.Errors, 3, "opts %v", opts)
			for i, ne := range qe.Errors {
				assert.Equal(t, i+2, ne.Node)
				assert.Equal(t, srvs[i+2].Addr(), ne.Addr)
				assert.ErrorIs(t, ne, distlock.ErrNodeTimeout)
			}
			for _, s := range srvs[:2] {
				assert.Empty(t, rlGet(t, s, rlKey("k")), "opts %v: failed attempt left its key on %s", opts, s.Addr())
			}
		}
	})
}

// TestRedlockAutoRefreshLosesMajority: an auto-refreshed lock whose majority
// stops answering reports the loss by ValidUntil.
func TestRedlockAutoRefreshLosesMajority(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	rl := newRL(t, srvs)
	l, err := rl.Obtain(context.Background(), "k", distlock.WithTTL(1500*time.Millisecond), distlock.WithAutoRefresh())
	require.NoError(t, err)
	pause(t, srvs[0], srvs[2], srvs[4])
	defer resume(t, srvs[0], srvs[2], srvs[4])

	waitClosed(t, l.Done(), waitTimeout, "Done with a majority paused")
	closed := time.Now()
	require.ErrorIs(t, l.Err(), distlock.ErrNotHeld)
	assert.False(t, closed.Before(l.ValidUntil()), "closed before ValidUntil")
	assert.Less(t, closed.Sub(l.ValidUntil()), 300*time.Millisecond, "closed long after ValidUntil")
	err = l.Release(context.Background())
	assert.NotErrorIs(t, err, distlock.ErrNotObtained)
}

// TestRedlockNodeRestartedEmpty: a node that loses its data while the lock
// is held does not free the lock: the other four keep it, refreshes keep
// working, and another Redlock cannot obtain it.
func TestRedlockNodeRestartedEmpty(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	ctx := context.Background()
	const ttl = 8 * rlNodeTimeout
	a := newRL(t, srvs)
	b := newRL(t, srvs)
	l, err := a.Obtain(ctx, "k", distlock.WithTTL(ttl), distlock.WithAutoRefresh())
	require.NoError(t, err)

	srvs[0].Kill(t)
	srvs[0].Restart(t)
	require.Empty(t, rlGet(t, srvs[0], rlKey("k")), "restarted node should be empty")

	// For one and a half TTLs, b keeps trying and keeps failing: a's
	// refreshes hold the lock on the other four nodes.
	bctx, cancel := context.WithTimeout(ctx, ttl+ttl/2)
	defer cancel()
	_, err = b.Obtain(bctx, "k", distlock.WithTTL(ttl), distlock.WithRetry(distlock.LinearBackoff(50*time.Millisecond)))
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assertOpen(t, l.Done(), "Done of the holder")
	require.NoError(t, l.Err())

	require.NoError(t, l.Refresh(ctx, 0))
	got, err := l.TTL(ctx)
	require.NoError(t, err)
	assert.Greater(t, got, time.Duration(0))
	require.NoError(t, l.Release(ctx))

	l2, err := b.Obtain(ctx, "k", distlock.WithTTL(ttl))
	require.NoError(t, err, "free after the holder's release")
	require.NoError(t, l2.Release(ctx))
}

// TestRedlockFenceAcrossQuorums: three nodes, A's fence counter far ahead;
// the first lock is taken on {A,B}, the second on {B,C}. The second fence
// must still be greater: the first was written back to B.
func TestRedlockFenceAcrossQuorums(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	A, B, C := srvs[0], srvs[1], srvs[2]
	ctx := context.Background()
	// Long client timeouts: the commands queued for a paused node are then
	// answered, in order, once it resumes, and a PING on the same
	// autopipeliner tells when they have been.
	clients := rlClientsTimeout(t, srvs, 5*time.Second)
	barrier := func(i int) {
		t.Helper()
		ap, err := clients[i].AsyncAutoPipeline()
		require.NoError(t, err)
		require.NoError(t, ap.Ping(ctx).Err())
	}
	rl := distlock.NewRedlock(clients, distlock.WithNodeTimeout(rlNodeTimeout), distlock.WithTTL(10*time.Second))
	fenceKey := rlKey("k") + ":fence"
	A.Exec(t, "SET", fenceKey, 1000)

	pause(t, C)
	l1, err := rl.Obtain(ctx, "k", distlock.WithFencing())
	require.NoError(t, err)
	assert.Equal(t, int64(1001), l1.Fence())
	assert.Equal(t, "1001", rlGet(t, B, fenceKey), "fence written back to B")
	require.NoError(t, l1.Release(ctx))
	resume(t, C)
	barrier(2)

	pause(t, A)
	l2, err := rl.Obtain(ctx, "k", distlock.WithFencing())
	require.NoError(t, err)
	assert.Greater(t, l2.Fence(), l1.Fence(), "quorum {B,C} handed out an older fence")
	require.NoError(t, l2.Release(ctx))
	resume(t, A)
	barrier(0)

	l3, err := rl.Obtain(ctx, "k", distlock.WithFencing())
	require.NoError(t, err)
	assert.Greater(t, l3.Fence(), l2.Fence())
	require.NoError(t, l3.Release(ctx))
}

// TestRedlockValidUntilRespectsDrift: ValidUntil is measured from the start
// of the attempt, so the attempt's own duration (here at least one slowed
// round trip) and the drift allowance are both subtracted.
func TestRedlockValidUntilRespectsDrift(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	const latency = 20 * time.Millisecond
	clients := make([]redis.UniversalClient, len(srvs))
	for i, s := range srvs {
		p := redistest.NewProxy(t, s.Addr())
		if i < 3 { // every quorum includes a slowed node
			p.SetLatency(latency)
		}
		clients[i] = s.Client(t, func(o *redis.Options) { o.Addr = p.Addr() })
	}
	rl := distlock.NewRedlock(clients, distlock.WithNodeTimeout(time.Second))
	ctx := context.Background()
	const ttl = 20 * time.Second
	for _, factor := range []float64{0, 0.01, 0.2} {
		before := time.Now()
		l, err := rl.Obtain(ctx, "k", distlock.WithTTL(ttl), distlock.WithDriftFactor(factor))
		after := time.Now()
		require.NoError(t, err)
		require.GreaterOrEqual(t, after.Sub(before), 2*latency, "the latency did not apply")
		drift := time.Duration(float64(ttl)*factor) + 2*time.Millisecond
		// The attempt started after before and at least one round trip
		// before after: ValidUntil = start + TTL - drift lies between.
		assert.False(t, l.ValidUntil().Before(before.Add(ttl-drift)), "factor %v: ValidUntil %v after before", factor, l.ValidUntil().Sub(before))
		assert.False(t, l.ValidUntil().After(after.Add(-2*latency+ttl-drift)), "factor %v: ValidUntil %v after before, attempt took %v: elapsed time not subtracted",
			factor, l.ValidUntil().Sub(before), after.Sub(before))
		require.NoError(t, l.Release(ctx))
	}
}

// TestRedlockFansOutConcurrently: with every node a slowed round trip away,
// an obtain costs about one round trip, not one per node.
func TestRedlockFansOutConcurrently(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	const latency = 20 * time.Millisecond // each way
	for _, pipelining := range []bool{true, false} {
		clients := make([]redis.UniversalClient, len(srvs))
		for i, s := range srvs {
			p := redistest.NewProxy(t, s.Addr())
			p.SetLatency(latency)
			clients[i] = s.Client(t, func(o *redis.Options) { o.Addr = p.Addr() })
		}
		rl := distlock.NewRedlock(clients, distlock.WithNodeTimeout(time.Second), distlock.WithPipelining(pipelining))
		ctx := context.Background()
		var best time.Duration = math.MaxInt64
		for range 3 { // the first round also dials the connections
			start := time.Now()
			l, err := rl.Obtain(ctx, "k")
			best = min(best, time.Since(start))
			require.NoError(t, err)
			require.NoError(t, l.Release(ctx))
		}
		// One round trip is 2×latency; a serial fan-out would take 5 of them.
		assert.Less(t, best, 3*2*latency, "pipelining=%v: fan-out is not concurrent", pipelining)
	}
}

// TestRedlockContentionVersusFailures: ErrNotObtained only when other
// holders decided the outcome, with the node errors attached when nodes
// failed too; failures that alone rule out a quorum are not contention.
func TestRedlockContentionVersusFailures(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	rl := newRL(t, srvs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// hold makes another holder own the lock on nodes idx, of the running
	// nodes srvs[:live].
	live := 5
	hold := func(idx ...int) {
		t.Helper()
		for _, s := range srvs[:live] {
			s.Exec(t, "DEL", rlKey("k"))
		}
		for _, i := range idx {
			srvs[i].Exec(t, "SET", rlKey("k"), "someone-else", "PX", 60000)
		}
	}

	// Held on a majority, no failures: plain contention.
	hold(0, 1, 2)
	_, err := rl.Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	var qe *distlock.QuorumError
	assert.False(t, errors.As(err, &qe), "no node failed: %v", err)
	assert.Equal(t, "someone-else", rlGet(t, srvs[0], rlKey("k")), "another holder's key touched")
	assert.Empty(t, rlGet(t, srvs[3], rlKey("k")), "the attempt's own key left behind")

	pause(t, srvs[4])
	defer resume(t, srvs[4])
	live = 4
	// Held on two, one node down: both were needed to rule out a quorum.
	hold(0, 1)
	_, err = rl.Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	require.ErrorAs(t, err, &qe)
	assert.Equal(t, 2, qe.Refused)
	require.Len(t, qe.Errors, 1)
	assert.Equal(t, 4, qe.Errors[0].Node)
	assert.ErrorIs(t, err, distlock.ErrNodeTimeout)

	// Held on three with a node down: contention alone decided it.
	hold(0, 1, 2)
	_, err = rl.Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	require.ErrorAs(t, err, &qe)

	// Held on one, three nodes down: the failures alone rule out a quorum.
	pause(t, srvs[2], srvs[3])
	defer resume(t, srvs[2], srvs[3])
	live = 2
	hold(0)
	_, err = rl.Obtain(ctx, "k")
	require.Error(t, err)
	assert.NotErrorIs(t, err, distlock.ErrNotObtained)
	require.ErrorAs(t, err, &qe)
	assert.Equal(t, 1, qe.Refused)
	assert.Len(t, qe.Errors, 3)
}

// TestRedlockBlockingRetriesThroughMixedFailures: a blocking obtain keeps
// waiting while another holder and a failed node together deny a quorum,
// and gets the lock when the holder's keys expire.
func TestRedlockBlockingRetriesThroughMixedFailures(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	rl := newRL(t, srvs)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, i := range []int{0, 1} {
		srvs[i].Exec(t, "SET", rlKey("k"), "someone-else", "PX", 500)
	}
	pause(t, srvs[4])
	defer resume(t, srvs[4])
	l, err := rl.Obtain(ctx, "k", distlock.WithBlocking())
	require.NoError(t, err)
	for _, s := range srvs[:4] {
		assert.Equal(t, distlock.StoredValue(l), rlGet(t, s, rlKey("k")))
	}
	require.NoError(t, l.Release(ctx))
}

// TestRedlockReleaseAndRefreshAfterLoss: once the keys are gone from a
// majority, refresh and release report ErrNotHeld and Done closes.
func TestRedlockReleaseAndRefreshAfterLoss(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	rl := newRL(t, srvs)
	ctx := context.Background()
	l, err := rl.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	for _, s := range srvs[:3] {
		s.Exec(t, "DEL", rlKey("k"))
	}
	require.ErrorIs(t, l.Refresh(ctx, 0), distlock.ErrNotHeld)
	waitClosed(t, l.Done(), waitTimeout, "Done after a refresh found the lock gone")
	require.ErrorIs(t, l.Err(), distlock.ErrNotHeld)
	require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)
	for _, s := range srvs[3:] {
		assert.Empty(t, rlGet(t, s, rlKey("k")), "Release skipped %s", s.Addr())
	}
}

// TestRedlockDo runs fn under the lock and releases it afterwards.
func TestRedlockDo(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	rl := newRL(t, srvs)
	ctx := context.Background()
	ran := false
	err := rl.Do(ctx, "job", func(ctx context.Context) error {
		ran = true
		_, err := rl.Obtain(ctx, "job")
		if !errors.Is(err, distlock.ErrNotObtained) {
			return fmt.Errorf("second obtain inside Do: %v", err)
		}
		return nil
	}, distlock.WithTTL(10*time.Second))
	require.NoError(t, err)
	require.True(t, ran)
	for _, s := range srvs {
		assert.Empty(t, rlGet(t, s, rlKey("job")), "not released on %s", s.Addr())
	}
}

// TestRedlockTTLIsWhatAQuorumGuarantees: TTL reports the quorum-th largest
// remaining TTL among the nodes that hold the lock.
func TestRedlockTTLIsWhatAQuorumGuarantees(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	rl := newRL(t, srvs)
	ctx := context.Background()
	l, err := rl.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	// Remaining TTLs 50s, 40s, 30s, 20s, 10s: a quorum of three holds it
	// for at least 30s.
	for i, s := range srvs {
		s.Exec(t, "PEXPIRE", rlKey("k"), strconv.Itoa((5-i)*10000))
	}
	got, err := l.TTL(ctx)
	require.NoError(t, err)
	assert.LessOrEqual(t, got, 30*time.Second)
	assert.Greater(t, got, 29*time.Second)
	require.NoError(t, l.Release(ctx))
}

func TestRedlockBadInput(t *testing.T) {
	ctx := context.Background()
	unused := func(addr string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	same := unused("127.0.0.1:1")
	var typedNil *redis.Client
	tests := []struct {
		name    string
		clients []redis.UniversalClient
		want    string
	}{
		{"nil list", nil, "no Redis clients"},
		{"empty list", []redis.UniversalClient{}, "no Redis clients"},
		{"nil client", []redis.UniversalClient{unused("127.0.0.1:2"), nil}, "nil Redis client at index 1"},
		{"typed nil client", []redis.UniversalClient{typedNil}, "nil Redis client at index 0"},
		{"same client twice", []redis.UniversalClient{same, unused("127.0.0.1:3"), same}, "clients 0 and 2 are the same client"},
		{"same address twice", []redis.UniversalClient{unused("127.0.0.1:4"), unused("127.0.0.1:4")}, "both connect to 127.0.0.1:4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rl := distlock.NewRedlock(tt.clients)
			_, err := rl.Obtain(ctx, "k")
			require.ErrorIs(t, err, distlock.ErrInvalidArgument)
			assert.NotErrorIs(t, err, distlock.ErrNotObtained)
			assert.Contains(t, err.Error(), tt.want)
			ran := false
			err = rl.Do(ctx, "k", func(context.Context) error { ran = true; return nil })
			require.ErrorIs(t, err, distlock.ErrInvalidArgument)
			assert.False(t, ran)
		})
	}

	for name, rl := range map[string]*distlock.Redlock{"nil Redlock": nil, "zero Redlock": {}} {
		_, err := rl.Obtain(ctx, "k")
		assert.ErrorIs(t, err, distlock.ErrInvalidArgument, name)
	}

	srvs := redistest.StartN(t, 3)
	rl := newRL(t, srvs)
	for _, tt := range []struct {
		name string
		key  string
		opts []distlock.Option
	}{
		{"empty key", "", nil},
		{"zero TTL", "k", []distlock.Option{distlock.WithTTL(0)}},
		{"TTL below drift", "k", []distlock.Option{distlock.WithTTL(time.Millisecond)}},
		{"NaN drift", "k", []distlock.Option{distlock.WithDriftFactor(math.NaN())}},
		{"zero node timeout", "k", []distlock.Option{distlock.WithNodeTimeout(0)}},
		{"nil retry", "k", []distlock.Option{distlock.WithRetry(nil)}},
	} {
		_, err := rl.Obtain(ctx, tt.key, tt.opts...)
		assert.ErrorIs(t, err, distlock.ErrInvalidArgument, tt.name)
	}
}

// TestRedlockRefreshHealsRestartedNodes: five nodes; during an
// auto-refreshed hold, two nodes are killed and restarted empty, one after
// the other. After the next refresh each restarted node holds the key
// again with the holder's token (the quorum regains its margin), and at no
// point does another client obtain the lock. A node where another token
// holds the key is never overwritten.
func TestRedlockRefreshHealsRestartedNodes(t *testing.T) {
	srvs := redistest.StartN(t, 5)
	ctx := context.Background()
	const ttl = 8 * rlNodeTimeout
	a := newRL(t, srvs)
	b := newRL(t, srvs)
	l, err := a.Obtain(ctx, "heal", distlock.WithTTL(ttl), distlock.WithAutoRefresh())
	require.NoError(t, err)

	// b keeps trying throughout: it must never obtain.
	stop := make(chan struct{})
	bErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				bErr <- nil
				return
			default:
			}
			if bl, err := b.Obtain(ctx, "heal", distlock.WithTTL(ttl)); err == nil {
				_ = bl.Release(ctx)
				bErr <- errors.New("another client obtained the lock")
				return
			}
		}
	}()
	for _, i := range []int{0, 1} {
		// (The lock key itself may be healed before the test can look,
		// so a marker shows that the restart lost the node's data.)
		srvs[i].Exec(t, "SET", "marker", "1")
		srvs[i].Kill(t)
		srvs[i].Restart(t)
		require.Empty(t, rlGet(t, srvs[i], "marker"), "restarted node should be empty")
		// A refresh comes every TTL/3: within a TTL the key is back.
		deadline := time.Now().Add(waitTimeout)
		for rlGet(t, srvs[i], rlKey("heal")) != distlock.StoredValue(l) {
			require.True(t, time.Now().Before(deadline), "node %d not healed", i)
			time.Sleep(ttl / 20)
		}
	}
	close(stop)
	require.NoError(t, <-bErr)
	require.NoError(t, l.Err())

	// Another token on a node is left alone: the refresh counts it as not
	// held, and still succeeds on the other four.
	srvs[2].Exec(t, "SET", rlKey("heal"), "someone-else")
	require.NoError(t, l.Refresh(ctx, 0))
	assert.Equal(t, "someone-else", rlGet(t, srvs[2], rlKey("heal")))
	require.NoError(t, l.Release(ctx))
}

// TestRedlockRefreshDoesNotResurrect: a key gone from every node (deleted
// by hand) is a lost lock: the next refresh reports it (Done closes, Err
// matches ErrNotHeld) and takes the key again nowhere, even when the
// refresh's answers come late: healing happens only after a quorum
// confirmed the hold.
func TestRedlockRefreshDoesNotResurrect(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	ctx := context.Background()
	const ttl = 8 * rlNodeTimeout
	l, err := newRL(t, srvs).Obtain(ctx, "gone", distlock.WithTTL(ttl), distlock.WithAutoRefresh())
	require.NoError(t, err)
	for _, s := range srvs {
		s.Exec(t, "DEL", rlKey("gone"))
	}
	waitClosed(t, l.Done(), waitTimeout, "Done of a lock deleted on every node")
	require.ErrorIs(t, l.Err(), distlock.ErrNotHeld)
	for i, s := range srvs {
		assert.Empty(t, rlGet(t, s, rlKey("gone")), "node %d: the lost lock was taken again", i)
	}
}
