package distlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
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

// multiLocker is what the multi-key tests need of a Locker or a Redlock.
type multiLocker interface {
	Obtain(ctx context.Context, key string, opts ...distlock.Option) (*distlock.Lock, error)
	ObtainMulti(ctx context.Context, keys []string, opts ...distlock.Option) (*distlock.Lock, error)
}

// multiSetup is one deployment for the multi-key tests: proc makes the
// Locker (or Redlock) of a new "process", with clients of its own; nodes
// are the clients to inspect the keys with (one per Redlock node, or the
// one deployment); quorum is how many of them must hold a key.
type multiSetup struct {
	proc   func() multiLocker
	nodes  []redis.UniversalClient
	quorum int
}

// multiDeployments runs f on a Locker over one redis-server, a Locker over
// a 3-master Redis Cluster, and a Redlock over three redis-servers.
func multiDeployments(t *testing.T, f func(t *testing.T, s multiSetup)) {
	t.Run("Locker", func(t *testing.T) {
		srv := redistest.Start(t)
		f(t, multiSetup{
			proc:   func() multiLocker { return distlock.New(srv.Client(t)) },
			nodes:  []redis.UniversalClient{srv.Client(t)},
			quorum: 1,
		})
	})
	t.Run("Cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3)
		f(t, multiSetup{
			proc:   func() multiLocker { return distlock.New(cl.Client(t)) },
			nodes:  []redis.UniversalClient{cl.Client(t)},
			quorum: 1,
		})
	})
	t.Run("Redlock", func(t *testing.T) {
		srvs := redistest.StartN(t, 3)
		// Node timeouts well above rlNodeTimeout: with two dozen Redlocks
		// busy at once on a loaded machine under -race, answers taking
		// over 200ms were seen, and a node timeout is not what these
		// tests are about. (A call's TTL/10 still caps it.)
		proc := func() multiLocker {
			return distlock.NewRedlock(rlClientsTimeout(t, srvs, 2*time.Second), distlock.WithNodeTimeout(time.Second))
		}
		s := multiSetup{proc: proc, quorum: 2}
		for _, srv := range srvs {
			s.nodes = append(s.nodes, srv.Client(t))
		}
		f(t, s)
	})
}

// lockValues returns, per node, every lock key (default prefix) and its
// value: what holds which key.
func (s multiSetup) lockValues(t *testing.T) []map[string]string {
	t.Helper()
	ctx := context.Background()
	out := make([]map[string]string, len(s.nodes))
	for i, c := range s.nodes {
		var mu sync.Mutex
		vals := make(map[string]string)
		scan := func(ctx context.Context, c *redis.Client) error {
			keys, err := c.Keys(ctx, "distlock:{*}").Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				v, err := c.Get(ctx, k).Result()
				if errors.Is(err, redis.Nil) {
					continue // expired or deleted meanwhile
				}
				if err != nil {
					return err
				}
				mu.Lock()
				vals[k] = v
				mu.Unlock()
			}
			return nil
		}
		switch c := c.(type) {
		case *redis.ClusterClient:
			require.NoError(t, c.ForEachMaster(ctx, scan))
		case *redis.Client:
			require.NoError(t, scan(ctx, c))
		default:
			t.Fatalf("cannot scan a %T", c)
		}
		out[i] = vals
	}
	return out
}

// holders counts the nodes on which the lock key of key carries token.
func (s multiSetup) holders(ctx context.Context, key, token string) (int, error) {
	n := 0
	for _, c := range s.nodes {
		v, err := c.Get(ctx, rlKey(key)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
		if v == token {
			n++
		}
	}
	return n, nil
}

// randomKeys draws 2 to 4 of keys in a random order.
func randomKeys(rng *rand.Rand, keys []string) []string {
	n := 2 + rng.IntN(3)
	var out []string
	for _, i := range rng.Perm(len(keys))[:n] {
		out = append(out, keys[i])
	}
	return out
}

var multiPool = []string{"stock:0", "stock:1", "stock:2", "stock:3", "stock:4", "stock:5"}

// TestObtainMultiOverlappingSetsNeverDeadlock: 8 lockers (each with
// clients of its own: a stand-in for another process) × 3 goroutines take
// random sets of 2 to 4 of 6 keys, named in random orders, blocking, and
// in the critical section check every key of their set: nobody else is
// inside for it (an in-process count that must be exactly 1), its lock
// key carries the holder's token (on a quorum of the nodes), its fence is
// above every earlier holder's, and a read-modify-write of a per-key
// counter in Redis loses no update. Everyone must finish before the ctx
// ends (a deadlock, or a caller starved, fails the test), and afterwards
// no lock key is left.
func TestObtainMultiOverlappingSetsNeverDeadlock(t *testing.T) {
	multiDeployments(t, func(t *testing.T, s multiSetup) {
		const lockers, workers, rounds = 8, 3, 10
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		counters := s.nodes[0]
		var inside [6]atomic.Int32
		var mu sync.Mutex
		lastFence := make(map[string]int64)
		sections := make(map[string]int)
		errs := make(chan error, 100)
		report := func(err error) {
			select {
			case errs <- err:
			default: // enough to go on
			}
		}
		var wg sync.WaitGroup
		for i := range lockers {
			ml := s.proc()
			for w := range workers {
				seed := uint64(i*workers + w)
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, 13))
					for r := range rounds {
						set := randomKeys(rng, multiPool)
						l, err := ml.ObtainMulti(ctx, set, distlock.WithBlocking(), distlock.WithTTL(10*time.Second), distlock.WithFencing())
						if err != nil {
							report(fmt.Errorf("locker %d worker %d round %d %v: %w", i, w, r, set, err))
							return
						}
						idx := make([]int, len(set))
						for j, k := range set {
							idx[j] = slices.Index(multiPool, k)
							if n := inside[idx[j]].Add(1); n != 1 {
								report(fmt.Errorf("%s: %d holders inside at once", k, n))
							}
						}
						fences := l.Fences()
						mu.Lock()
						for j, k := range set {
							if fences[j] <= lastFence[k] {
								report(fmt.Errorf("%s: fence %d not above the last holder's %d", k, fences[j], lastFence[k]))
							}
							lastFence[k] = fences[j]
							sections[k]++
						}
						mu.Unlock()
						for _, k := range set {
							if n, err := s.holders(ctx, k, distlock.StoredValue(l)); err != nil || n < s.quorum {
								report(fmt.Errorf("%s: held with the token on %d nodes (%v) while inside", k, n, err))
							}
							// A lost update shows as a final count below the
							// number of critical sections of the key.
							v, err := counters.Get(ctx, "count:"+k).Int()
							if err != nil && !errors.Is(err, redis.Nil) {
								report(err)
							}
							if err := counters.Set(ctx, "count:"+k, v+1, 0).Err(); err != nil {
								report(err)
							}
						}
						for _, i := range idx {
							inside[i].Add(-1)
						}
						if err := l.Release(ctx); err != nil {
							report(fmt.Errorf("release %v: %w", set, err))
						}
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, k := range multiPool {
			n, err := counters.Get(ctx, "count:"+k).Int()
			if errors.Is(err, redis.Nil) {
				n, err = 0, nil
			}
			require.NoError(t, err)
			assert.Equal(t, sections[k], n, "%s: lost updates", k)
		}
		require.Eventually(t, func() bool {
			for _, vals := range s.lockValues(t) {
				if len(vals) > 0 {
					t.Logf("left: %v", vals)
					return false
				}
			}
			return true
		}, 5*time.Second, 50*time.Millisecond, "lock keys left behind (their TTL is 10s)")
	})
}

// TestObtainMultiFailedAttemptsLeaveNoKeys: in each round 12 callers (6
// lockers × 2) try random overlapping sets at the same moment, without
// waiting. When they have all returned, Redis holds exactly the keys of
// the callers that obtained, each with its holder's token: no failed
// attempt left a key of its own (on the Cluster the failed ones took
// slot groups first and gave them back). The keys of one deployment are
// checked at once (the clean-up is done before ObtainMulti returns); on
// a Redlock a slow node's clean-up is sent but not awaited, so there they
// get 2s (their TTL is a minute).
func TestObtainMultiFailedAttemptsLeaveNoKeys(t *testing.T) {
	multiDeployments(t, func(t *testing.T, s multiSetup) {
		const lockers, workers, rounds = 6, 2, 8
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		procs := make([]multiLocker, lockers)
		for i := range procs {
			procs[i] = s.proc()
		}
		rng := rand.New(rand.NewPCG(16, 13))
		failures, successes := 0, 0
		type outcome struct {
			l   *distlock.Lock
			err error
		}
		for round := range rounds {
			start := make(chan struct{})
			outs := make(chan outcome, lockers*workers)
			var wg sync.WaitGroup
			for i := range lockers {
				for range workers {
					set := randomKeys(rng, multiPool)
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						l, err := procs[i].ObtainMulti(ctx, set, distlock.WithTTL(time.Minute))
						outs <- outcome{l, err}
					}()
				}
			}
			close(start)
			wg.Wait()
			close(outs)
			want := make(map[string]string) // lock key → holder's token
			var got []*distlock.Lock
			for o := range outs {
				if o.err != nil {
					require.ErrorIs(t, o.err, distlock.ErrNotObtained, "round %d", round)
					failures++
					continue
				}
				successes++
				got = append(got, o.l)
				for _, k := range o.l.Keys() {
					prev, dup := want[rlKey(k)]
					require.False(t, dup, "round %d: %s obtained by two callers (%s and %s)", round, k, prev, o.l.Token())
					want[rlKey(k)] = distlock.StoredValue(o.l)
				}
			}
			check := func() error {
				held := make(map[string]int)
				for node, vals := range s.lockValues(t) {
					for rk, v := range vals {
						if want[rk] != v {
							return fmt.Errorf("round %d: node %d: %s holds %q, not a holder's token", round, node, rk, v)
						}
						held[rk]++
					}
				}
				for rk := range want {
					if held[rk] < s.quorum {
						return fmt.Errorf("round %d: %s held on %d nodes", round, rk, held[rk])
					}
				}
				return nil
			}
			if s.quorum == 1 {
				require.NoError(t, check())
			} else {
				require.Eventually(t, func() bool { return check() == nil }, 2*time.Second, 10*time.Millisecond, "%v", check())
			}
			for _, l := range got {
				require.NoError(t, l.Release(ctx))
			}
			for node, vals := range s.lockValues(t) {
				require.Empty(t, vals, "round %d: node %d: keys left after every holder released", round, node)
			}
		}
		t.Logf("%d obtained, %d not obtained", successes, failures)
		require.Positive(t, failures, "no contention: the test proved nothing")
		require.Positive(t, successes)
	})
}

// slotOwner is the master of a 3-master redistest Cluster that owns the
// slot of the lock named key: node i owns the i-th third of the slots.
func slotOwner(key string) int { return int(distlock.KeySlot(rlKey(key))) * 3 / 16384 }

// clusterKeys returns want key names "<prefix>N" whose lock keys fall on
// the given masters (one name per entry), all in different slots.
func clusterKeys(prefix string, owners ...int) []string {
	var out []string
	used := make(map[uint16]bool)
	for n := 0; len(out) < len(owners); n++ {
		k := fmt.Sprintf("%s%d", prefix, n)
		slot := distlock.KeySlot(rlKey(k))
		if slotOwner(k) == owners[len(out)] && !used[slot] {
			used[slot] = true
			out = append(out, k)
		}
	}
	return out
}

// TestObtainMultiClusterSlots: keys in four slots on three masters are
// taken, refreshed and released as one lock; a key held by someone else
// makes the whole attempt fail with ErrNotObtained, and the groups the
// attempt had taken before (their fence counters moved) are given back.
func TestObtainMultiClusterSlots(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c := cl.Client(t)
	x := distlock.New(cl.Client(t))
	z := distlock.New(cl.Client(t))
	keys := clusterKeys("sku:", 2, 0, 1, 0) // in the global order: 0, 0, 1, 2
	for _, k := range keys {
		slot, err := c.ClusterKeySlot(ctx, rlKey(k)).Result()
		require.NoError(t, err)
		require.EqualValues(t, distlock.KeySlot(rlKey(k)), slot, k)
	}
	get := func(k string) string {
		v, err := c.Get(ctx, rlKey(k)).Result()
		if errors.Is(err, redis.Nil) {
			return ""
		}
		require.NoError(t, err)
		return v
	}
	pttl := func(k string) time.Duration {
		d, err := c.PTTL(ctx, rlKey(k)).Result()
		require.NoError(t, err)
		return d
	}

	l, err := x.ObtainMulti(ctx, keys, distlock.WithTTL(2*time.Second), distlock.WithFencing())
	require.NoError(t, err)
	assert.Equal(t, keys, l.Keys())
	assert.Equal(t, keys[0], l.Key())
	assert.Equal(t, []int64{1, 1, 1, 1}, l.Fences())
	assert.Equal(t, int64(1), l.Fence())
	for _, k := range keys {
		assert.Equal(t, distlock.StoredValue(l), get(k), k)
	}
	ttl, err := l.TTL(ctx)
	require.NoError(t, err)
	assert.True(t, ttl > 0 && ttl <= 2*time.Second, "TTL %v", ttl)
	require.NoError(t, l.Refresh(ctx, 20*time.Second))
	for _, k := range keys {
		assert.Greater(t, pttl(k), 2*time.Second, "%s not refreshed", k)
	}
	// The shortest key's TTL is the lock's.
	require.NoError(t, c.PExpire(ctx, rlKey(keys[2]), 5*time.Second).Err())
	ttl, err = l.TTL(ctx)
	require.NoError(t, err)
	assert.LessOrEqual(t, ttl, 5*time.Second)
	require.NoError(t, l.Release(ctx))
	for _, k := range keys {
		assert.Empty(t, get(k), "%s left after Release", k)
	}
	require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)

	// Contention on the key of master 1, the third group in the order.
	held, err := z.Obtain(ctx, keys[2])
	require.NoError(t, err)
	_, err = x.ObtainMulti(ctx, keys, distlock.WithFencing())
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	assert.NotErrorIs(t, err, distlock.ErrInvalidArgument)
	for _, k := range []string{keys[0], keys[1], keys[3]} {
		assert.Empty(t, get(k), "%s held after a failed attempt", k)
	}
	assert.Equal(t, distlock.StoredValue(held), get(keys[2]))
	fences := make([]int64, len(keys))
	for i, k := range keys {
		fences[i], err = c.Get(ctx, rlKey(k)+":fence").Int64()
		require.NoError(t, err)
	}
	// The groups before the held one (keys 1 and 3, on master 0) were
	// taken, drawing fences, and given back; the one after it (key 0, on
	// master 2) was never tried.
	assert.Equal(t, []int64{1, 2, 1, 2}, fences, "fence counters of %v", keys)
	require.NoError(t, held.Release(ctx))

	l, err = x.ObtainMulti(ctx, keys, distlock.WithFencing())
	require.NoError(t, err)
	assert.Equal(t, []int64{2, 3, 2, 3}, l.Fences())
	require.NoError(t, l.Release(ctx))
}

// TestObtainMultiLoss: the lock is held only while every key is. A key
// deleted by hand makes Refresh report the loss (Done closes) and give
// back the other keys at once; one taken over makes Release say so and
// still free the keys that were left. An auto-refreshed lock outlives its
// TTL many times over.
func TestObtainMultiLoss(t *testing.T) {
	multiDeployments(t, func(t *testing.T, s multiSetup) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		a, b := s.proc(), s.proc()
		keys := []string{"x", "y", "z"}
		count := func(k string) int {
			n := 0
			for _, vals := range s.lockValues(t) {
				if _, ok := vals[rlKey(k)]; ok {
					n++
				}
			}
			return n
		}

		l, err := a.ObtainMulti(ctx, keys, distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		for _, c := range s.nodes {
			require.NoError(t, c.Del(ctx, rlKey("y")).Err())
		}
		err = l.Refresh(ctx, 0)
		require.ErrorIs(t, err, distlock.ErrNotHeld)
		waitClosed(t, l.Done(), time.Second, "Done after the loss")
		require.ErrorIs(t, l.Err(), distlock.ErrNotHeld)
		assert.Zero(t, count("x"), "x kept by a lost lock")
		assert.Zero(t, count("z"), "z kept by a lost lock")
		require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)
		assert.Zero(t, count("x")+count("z"), "keys left after Release")

		l, err = a.ObtainMulti(ctx, keys, distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		for _, c := range s.nodes {
			require.NoError(t, c.Set(ctx, rlKey("z"), "someone-else", time.Minute).Err())
		}
		ttlErr := func() error { _, err := l.TTL(ctx); return err }()
		require.ErrorIs(t, ttlErr, distlock.ErrNotHeld)
		err = l.Release(ctx)
		require.ErrorIs(t, err, distlock.ErrNotHeld)
		assert.Zero(t, count("x")+count("y"), "keys left after Release")
		assert.Equal(t, len(s.nodes), count("z"), "another holder's key deleted")
		for _, c := range s.nodes {
			require.NoError(t, c.Del(ctx, rlKey("z")).Err())
		}

		// Short, but with room for the scheduling pauses of a loaded 2-core
		// machine under -race (150ms was lost now and then there, as a
		// plain lock's is); a Redlock's nodes get TTL/10 to answer, which
		// must leave room for those pauses too.
		ttl, lifetimes := 300*time.Millisecond, 8
		if s.quorum > 1 {
			ttl, lifetimes = time.Second, 4
		}
		l, err = a.ObtainMulti(ctx, keys, distlock.WithTTL(ttl), distlock.WithAutoRefresh())
		require.NoError(t, err)
		deadline := time.Now().Add(time.Duration(lifetimes) * ttl)
		for time.Now().Before(deadline) {
			for _, k := range keys {
				_, err := b.Obtain(ctx, k, distlock.WithTTL(ttl))
				require.ErrorIs(t, err, distlock.ErrNotObtained, "%s taken while auto-refreshed", k)
			}
			require.NoError(t, l.Err())
			time.Sleep(ttl / 3) // pacing of the probe, not synchronisation
		}
		require.NoError(t, l.Release(ctx))
		l2, err := b.ObtainMulti(ctx, keys)
		require.NoError(t, err, "free after Release")
		require.NoError(t, l2.Release(ctx))
	})
}

// TestObtainMultiBlockedCallerIsWoken: a blocked ObtainMulti waits for the
// key it found held and moves on to the next one held, woken each time by
// the release (its fallback re-check is an hour away and the holders'
// TTLs a minute, so only wake-ups can end its wait in time); and a plain
// Obtain blocked on one of its keys is woken by its Release.
func TestObtainMultiBlockedCallerIsWoken(t *testing.T) {
	multiDeployments(t, func(t *testing.T, s multiSetup) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		h1, h2, w, p := s.proc(), s.proc(), s.proc(), s.proc()
		hourly := distlock.WithRetry(distlock.LinearBackoff(time.Hour))
		subscribed := func(key string) bool {
			var n int64
			for _, c := range s.nodes {
				var m map[string]int64
				var err error
				if cc, ok := c.(*redis.ClusterClient); ok {
					// Sharded subscriptions (SSUBSCRIBE) are per node: sum
					// them up.
					var mu sync.Mutex
					m = make(map[string]int64)
					err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
						got, err := c.PubSubShardNumSub(ctx, rlKey(key)+":wake").Result()
						mu.Lock()
						for ch, k := range got {
							m[ch] += k
						}
						mu.Unlock()
						return err
					})
				} else {
					m, err = c.PubSubNumSub(ctx, rlKey(key)+":wake").Result()
				}
				require.NoError(t, err)
				n += m[rlKey(key)+":wake"]
			}
			return n >= int64(s.quorum)
		}

		la, err := h1.Obtain(ctx, "a", distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		lc, err := h2.Obtain(ctx, "c", distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		res := obtainBG(ctx, func(ctx context.Context) (*distlock.Lock, error) {
			return w.ObtainMulti(ctx, []string{"c", "b", "a"}, distlock.WithBlocking(), hourly, distlock.WithTTL(time.Minute))
		})
		require.Eventually(t, func() bool { return subscribed("a") || subscribed("c") }, waitTimeout, time.Millisecond)
		require.NoError(t, la.Release(ctx))
		require.Eventually(t, func() bool { return subscribed("c") }, waitTimeout, time.Millisecond, "the waiter waits for c")
		select {
		case got := <-res:
			t.Fatalf("obtained while c is held: %v", got.err)
		default:
		}
		require.NoError(t, lc.Release(ctx))
		got := <-res
		require.NoError(t, got.err)
		require.NoError(t, ctx.Err(), "the waiter was not woken")
		assert.Equal(t, []string{"c", "b", "a"}, got.l.Keys())

		plain := obtainBG(ctx, func(ctx context.Context) (*distlock.Lock, error) {
			return p.Obtain(ctx, "b", distlock.WithBlocking(), hourly)
		})
		require.Eventually(t, func() bool { return subscribed("b") }, waitTimeout, time.Millisecond)
		require.NoError(t, got.l.Release(ctx))
		pg := <-plain
		require.NoError(t, pg.err)
		require.NoError(t, ctx.Err(), "the plain waiter was not woken")
		require.NoError(t, pg.l.Release(ctx))
	})
}

// manyKeys returns n distinct keys k0, k1, ...
func manyKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	return keys
}

// TestObtainMultiBadInput: no keys, an empty key, a key given twice, a
// caller's token and a bad option are rejected with ErrInvalidArgument,
// writing nothing; so are, on a Redlock, WithReplicas and keys that a node
// (here a Ring) would have to take in more than one script.
func TestObtainMultiBadInput(t *testing.T) {
	ctx := context.Background()
	srvs := redistest.StartN(t, 3)
	lk := distlock.New(srvs[0].Client(t))
	rl := newRL(t, srvs)
	tests := []struct {
		name string
		keys []string
		opts []distlock.Option
		want string
	}{
		{"nil", nil, nil, "no keys"},
		{"empty list", []string{}, nil, "no keys"},
		{"empty key", []string{"a", ""}, nil, "empty key at index 1"},
		{"twice", []string{"a", "b", "a"}, nil, `key "a" given twice (at 0 and 2)`},
		{"twice among many", append(manyKeys(20), "k7"), nil, `key "k7" given twice (at 7 and 20)`},
		{"token", []string{"a", "b"}, []distlock.Option{distlock.WithToken("mine")}, "WithToken"},
		{"shared", []string{"a", "b"}, []distlock.Option{distlock.WithShared()}, "WithShared"},
		{"limit", []string{"a", "b"}, []distlock.Option{distlock.WithLimit(2)}, "WithLimit"},
		{"ttl", []string{"a", "b"}, []distlock.Option{distlock.WithTTL(0)}, "TTL"},
	}
	for _, tt := range tests {
		for name, ob := range map[string]multiLocker{"Locker": lk, "Redlock": rl} {
			var err error
			require.NotPanics(t, func() { _, err = ob.ObtainMulti(ctx, tt.keys, tt.opts...) }, "%s %s", name, tt.name)
			require.ErrorIs(t, err, distlock.ErrInvalidArgument, "%s %s", name, tt.name)
			assert.Contains(t, err.Error(), tt.want, "%s %s", name, tt.name)
			assert.NotContains(t, err.Error(), "\n")
		}
	}
	_, err := rl.ObtainMulti(ctx, []string{"a", "b"}, distlock.WithReplicas(1, 10*time.Millisecond))
	require.ErrorIs(t, err, distlock.ErrInvalidArgument)

	var rings []redis.UniversalClient
	for i, srv := range srvs {
		ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{fmt.Sprint("s", i): srv.Addr()}})
		t.Cleanup(func() { _ = ring.Close() })
		rings = append(rings, ring)
	}
	_, err = distlock.NewRedlock(rings).ObtainMulti(ctx, []string{"a", "b"})
	require.ErrorIs(t, err, distlock.ErrInvalidArgument)
	assert.Contains(t, err.Error(), "different slots")

	var zero distlock.Locker
	_, err = zero.ObtainMulti(ctx, []string{"a"})
	require.ErrorIs(t, err, distlock.ErrInvalidArgument)
	for _, srv := range srvs {
		assert.EqualValues(t, 0, srv.Exec(t, "DBSIZE"), "bad input wrote keys")
	}
}

// TestRedlockObtainMulti: each node takes every key or none. A key held
// on a majority of the nodes fails the attempt and leaves nothing of it on
// any node; one held on a minority does not, and that node keeps none of
// the lock's keys. Fences are per key and grow; a refresh gives a node
// that lost keys all of them back.
func TestRedlockObtainMulti(t *testing.T) {
	rlModes(t, 3, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		rl := newRL(t, srvs, mode)
		keys := []string{"b", "a"}
		on := func(i int, k string) string { return rlGet(t, srvs[i], rlKey(k)) }

		l, err := rl.ObtainMulti(ctx, keys, distlock.WithFencing(), distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		assert.Equal(t, []int64{1, 1}, l.Fences())
		for i := range srvs {
			for _, k := range keys {
				assert.Equal(t, distlock.StoredValue(l), on(i, k), "node %d key %s", i, k)
			}
		}
		srvs[1].Exec(t, "DEL", rlKey("a"))
		require.NoError(t, l.Refresh(ctx, 0))
		assert.Equal(t, distlock.StoredValue(l), on(1, "a"), "not healed")
		require.NoError(t, l.Release(ctx))
		for i := range srvs {
			assert.EqualValues(t, 0, srvs[i].Exec(t, "EXISTS", rlKey("a"), rlKey("b")), "node %d", i)
		}

		for _, i := range []int{0, 1} {
			srvs[i].Exec(t, "SET", rlKey("a"), "Z", "PX", 60000)
		}
		_, err = rl.ObtainMulti(ctx, keys, distlock.WithFencing())
		require.ErrorIs(t, err, distlock.ErrNotObtained)
		for i := range srvs {
			assert.Empty(t, on(i, "b"), "node %d keeps b of a failed attempt", i)
		}
		assert.Empty(t, on(2, "a"), "node 2 keeps a of a failed attempt")

		srvs[1].Exec(t, "DEL", rlKey("a"))
		l, err = rl.ObtainMulti(ctx, keys, distlock.WithFencing())
		require.NoError(t, err)
		assert.Equal(t, "Z", on(0, "a"))
		assert.Empty(t, on(0, "b"), "node 0 took b without a")
		fences := l.Fences()
		assert.Greater(t, fences[0], int64(1), "b's fence")
		assert.Greater(t, fences[1], int64(1), "a's fence")
		require.NoError(t, l.Release(ctx))
	})
}

// TestObtainMultiClusterCleanupSparesLaterAttempt: a failed attempt's
// give-back must never delete what a later attempt of the same call took.
//
//  1. On a Cluster, key a's slot comes before key b's. Z holds b.
//  2. X's attempt 1 takes a, finds b held and gives a back; that release
//     is held back on its connection (X's client times out and moves on).
//  3. Attempt 1's key a goes (it expired, say) and Z releases b.
//  4. X's attempt 2 takes a and b.
//  5. The held release lands.
//  6. Y tries a: it must not obtain while X believes it holds the lock.
//
// With one token for every attempt of a call the late release deletes
// attempt 2's key a and Y obtains it (seen failing with the token drawn
// once per ObtainMulti).
func TestObtainMultiClusterCleanupSparesLaterAttempt(t *testing.T) {
	release := scriptSrc(t, "multi_release")
	cl := redistest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	keys := clusterKeys("late:", 0, 2) // a on master 0, b on master 2
	a, b := keys[0], keys[1]
	f := redistest.NewFaults(t)
	x := distlock.New(cl.Client(t, func(o *redis.ClusterOptions) {
		o.Dialer = f.Dialer
		o.ReadTimeout = 300 * time.Millisecond
	}))
	y, z := distlock.New(cl.Client(t)), distlock.New(cl.Client(t))
	c := cl.Client(t)
	for _, n := range cl.Nodes {
		n.Exec(t, "SCRIPT", "LOAD", release) // as after any earlier release
	}
	zl, err := z.Obtain(ctx, b, distlock.WithTTL(time.Minute))
	require.NoError(t, err)

	held := f.Hold(redistest.And(redistest.Script(release), redistest.HasArg(rlKey(a))))
	retry := newSteppedRetry(10)
	res := obtainBG(ctx, func(ctx context.Context) (*distlock.Lock, error) {
		return x.ObtainMulti(ctx, []string{b, a}, distlock.WithTTL(time.Minute), distlock.WithRetry(retry))
	})
	require.Equal(t, 1, <-retry.failed)
	waitClosed(t, held.Caught(), waitTimeout, "attempt 1's give-back of a")
	require.EqualValues(t, 1, c.Exists(ctx, rlKey(a)).Val(), "attempt 1 took a")
	require.NoError(t, c.Del(ctx, rlKey(a)).Err()) // attempt 1's key a is gone
	require.NoError(t, zl.Release(ctx))
	retry.next <- struct{}{}
	got := finish(res, retry)
	require.NoError(t, got.err)
	defer got.l.Release(context.Background())
	require.NoError(t, held.Release(5*time.Second), "the held release lands")

	l2, err := y.Obtain(ctx, a)
	if err == nil {
		defer l2.Release(context.Background())
		t.Fatalf("two holders of %s: X (Err=%v) and Y", a, got.l.Err())
	}
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	require.NoError(t, got.l.Err())
	v, err := c.Get(ctx, rlKey(a)).Result()
	require.NoError(t, err)
	assert.Equal(t, distlock.StoredValue(got.l), v)
}

// TestRedlockObtainMultiCleanupSparesLaterAttempt: the same on a Redlock.
//
//  1. Nodes A, B, C. Z holds key b on A and B.
//  2. X's attempt 1 takes a and b only on C and fails; its clean-up on C
//     is held back on its connection.
//  3. Z's b on B goes, and so do attempt 1's keys on C (expired, say).
//  4. X's attempt 2 takes a and b on B and C.
//  5. The held clean-up lands on C; Z's b on A goes.
//  6. Y tries: it must not obtain while X believes it holds the lock.
func TestRedlockObtainMultiCleanupSparesLaterAttempt(t *testing.T) {
	release := scriptSrc(t, "multi_release")
	rlModes(t, 3, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		keys := []string{"a", "b"}
		f := redistest.NewFaults(t)
		clients := rlClients(t, srvs[:2])
		clients = append(clients, srvs[2].Client(t, f.Options, func(o *redis.Options) {
			o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
		}))
		x := distlock.NewRedlock(clients, distlock.WithNodeTimeout(rlNodeTimeout), mode)
		y := newRL(t, srvs)
		for _, i := range []int{0, 1} {
			srvs[i].Exec(t, "SET", rlKey("b"), "Z", "PX", 60000)
		}
		held := f.Hold(redistest.And(redistest.Script(release), redistest.HasArg(rlKey("a"))))
		retry := newSteppedRetry(10)
		res := obtainBG(ctx, func(ctx context.Context) (*distlock.Lock, error) {
			return x.ObtainMulti(ctx, keys, distlock.WithTTL(10*time.Second), distlock.WithRetry(retry))
		})
		require.Equal(t, 1, <-retry.failed)
		waitClosed(t, held.Caught(), waitTimeout, "attempt 1's clean-up on C")
		first := rlGet(t, srvs[2], rlKey("a"))
		require.NotEmpty(t, first, "attempt 1 took a on C")
		srvs[1].Exec(t, "DEL", rlKey("b"))
		srvs[2].Exec(t, "DEL", rlKey("a"), rlKey("b"))
		retry.next <- struct{}{}
		got := finish(res, retry)
		require.NoError(t, got.err)
		defer got.l.Release(context.Background())
		require.NoError(t, held.Release(5*time.Second), "the held clean-up lands")
		srvs[0].Exec(t, "DEL", rlKey("b"))

		l2, err := y.ObtainMulti(ctx, keys)
		if err == nil {
			defer l2.Release(context.Background())
			t.Fatalf("two holders: X (Err=%v) and Y", got.l.Err())
		}
		require.ErrorIs(t, err, distlock.ErrNotObtained)
		require.NoError(t, got.l.Err())
		assert.Equal(t, distlock.StoredValue(got.l), rlGet(t, srvs[2], rlKey("a")))
	})
}

// TestObtainMultiReplicas: WithReplicas acknowledges each group's write
// on its shard; on a Cluster without replicas nothing is acknowledged, the
// attempt fails with ErrNotReplicated (not ErrNotObtained), and no key is
// left. With a replica that acknowledges, the lock is obtained and
// refreshed.
func TestObtainMultiReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl := redistest.StartCluster(t, 3)
	keys := clusterKeys("repl:", 0, 1)
	_, err := distlock.New(cl.Client(t)).ObtainMulti(ctx, keys, distlock.WithReplicas(1, 20*time.Millisecond))
	require.ErrorIs(t, err, distlock.ErrNotReplicated)
	assert.NotErrorIs(t, err, distlock.ErrNotObtained)
	c := cl.Client(t)
	for _, k := range keys {
		assert.EqualValues(t, 0, c.Exists(ctx, rlKey(k)).Val(), "%s left unacknowledged", k)
	}

	// A WAIT timeout long enough for a loaded machine's replica (500ms
	// went unacknowledged once there), below the client's ReadTimeout.
	rs := redistest.StartReplicated(t, 1)
	lk := distlock.New(rs.Primary.Client(t, func(o *redis.Options) { o.ReadTimeout = 3 * time.Second }))
	l, err := lk.ObtainMulti(ctx, []string{"p", "q"}, distlock.WithReplicas(1, 2*time.Second))
	require.NoError(t, err)
	require.NoError(t, l.Refresh(ctx, 0))
	require.NoError(t, l.Release(ctx))
	assert.EqualValues(t, 0, rs.Primary.Exec(t, "DBSIZE"))
}

// TestObtainMultiErrorsNameTheKeys: errors name every key, on one line.
func TestObtainMultiErrorsNameTheKeys(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))
	l, err := lk.Obtain(ctx, "b")
	require.NoError(t, err)
	defer l.Release(ctx)
	_, err = lk.ObtainMulti(ctx, []string{"a", "b"})
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	assert.Equal(t, `obtain "[a b]": distlock: not obtained`, err.Error())
	assert.False(t, strings.Contains(err.Error(), "\n"))
}

// TestObtainMultiRing: on a redis.Ring each key is a group of its own, so
// that every key is written on the shard its name maps to: a plain Obtain
// through another Ring client finds each of them held, and a key held
// there makes the whole attempt fail, leaving none of the others.
func TestObtainMultiRing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	srvs := redistest.StartN(t, 2)
	ring := func() *redis.Ring {
		r := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"s0": srvs[0].Addr(), "s1": srvs[1].Addr()}})
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	x, y := distlock.New(ring()), distlock.New(ring())
	keys := manyKeys(6)
	l, err := x.ObtainMulti(ctx, keys)
	require.NoError(t, err)
	used := make(map[int]bool)
	for _, k := range keys {
		_, err := y.Obtain(ctx, k)
		require.ErrorIs(t, err, distlock.ErrNotObtained, "%s not held where the Ring puts it", k)
		for i, srv := range srvs {
			if rlGet(t, srv, rlKey(k)) == distlock.StoredValue(l) {
				used[i] = true
			}
		}
	}
	require.Len(t, used, 2, "every key on one shard: the test proves nothing")
	require.NoError(t, l.Release(ctx))

	held, err := y.Obtain(ctx, keys[3])
	require.NoError(t, err)
	_, err = x.ObtainMulti(ctx, keys)
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	for _, k := range keys {
		for _, srv := range srvs {
			if v := rlGet(t, srv, rlKey(k)); v != "" && v != distlock.StoredValue(held) {
				t.Errorf("%s left on %s by a failed attempt", k, srv.Addr())
			}
		}
	}
	require.NoError(t, held.Release(ctx))
}
