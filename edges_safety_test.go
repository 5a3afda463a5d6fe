package distlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// Safety at the edges: faults at the level of one command (a write held
// back on its connection, a reply lost after the server acted), injected
// with redistest.Faults.

// scriptSrc returns the source of one of the library's Lua scripts, for
// redistest.Script.
func scriptSrc(t *testing.T, name string) string {
	t.Helper()
	src := distlock.ScriptSource(name)
	require.NotEmpty(t, src, "script %q", name)
	return src
}

// steppedRetry is a RetryStrategy that hands control to the test between
// attempts: NextBackoff(n) reports n (attempt n failed) and waits for the
// test to let it go on. It retries at once, up to max times.
type steppedRetry struct {
	failed chan int
	next   chan struct{}
	max    int
	delay  time.Duration
}

func newSteppedRetry(max int) steppedRetry {
	return steppedRetry{failed: make(chan int), next: make(chan struct{}), max: max}
}

func (s steppedRetry) NextBackoff(n int) (time.Duration, bool) {
	if n > s.max {
		return 0, false
	}
	s.failed <- n
	<-s.next
	return s.delay, true
}

// obtainBG runs f in the background; the test receives its outcome.
func obtainBG(ctx context.Context, f func(ctx context.Context) (*distlock.Lock, error)) <-chan obtained {
	ch := make(chan obtained, 1)
	go func() { // owner: the test, which receives from ch
		l, err := f(ctx)
		ch <- obtained{l, err, time.Now()}
	}()
	return ch
}

// finish lets a stepped Obtain run to its end.
func finish(res <-chan obtained, retry steppedRetry) obtained {
	for {
		select {
		case got := <-res:
			return got
		case <-retry.failed:
			retry.next <- struct{}{}
		}
	}
}

// TestRedlockFailedAttemptCleanupSparesLaterAttempt: a failed attempt's
// clean-up must never delete what a later attempt of the same Obtain took.
//
//  1. Nodes A, B, C. Another holder Z has the key on A and B.
//  2. X's attempt 1 takes only C and fails; its clean-up release to C is
//     held back on its connection (X's client times out and moves on).
//  3. Z's key on B goes (it expired, say); X's attempt 2 takes B, and C.
//  4. The held release lands on C; Z's key on A goes.
//  5. Y tries: it must not obtain while X believes it holds the lock.
//
// Before the fix attempt 2 re-took C with attempt 1's token (acquire.lua's
// re-attach rule), the late release deleted it, and Y obtained {A, C}.
func TestRedlockFailedAttemptCleanupSparesLaterAttempt(t *testing.T) {
	release := scriptSrc(t, "release")
	rlModes(t, 3, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		const key = "two-holders"
		rk := rlKey(key)
		f := redistest.NewFaults(t)
		clients := rlClients(t, srvs[:2])
		clients = append(clients, srvs[2].Client(t, f.Options, func(o *redis.Options) {
			o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
		}))
		x := distlock.NewRedlock(clients, distlock.WithNodeTimeout(rlNodeTimeout), mode)
		y := newRL(t, srvs)
		srvs[0].Exec(t, "SET", rk, "Z", "PX", 60000)
		srvs[1].Exec(t, "SET", rk, "Z", "PX", 60000)

		held := f.Hold(redistest.And(redistest.Script(release), redistest.HasArg(rk)))
		retry := newSteppedRetry(10)
		res := obtainBG(ctx, func(ctx context.Context) (*distlock.Lock, error) {
			return x.Obtain(ctx, key, distlock.WithFencing(), distlock.WithTTL(10*time.Second), distlock.WithRetry(retry))
		})
		require.Equal(t, 1, <-retry.failed)
		waitClosed(t, held.Caught(), waitTimeout, "attempt 1's clean-up on C")
		srvs[1].Exec(t, "DEL", rk) // Z's key on B is gone
		retry.next <- struct{}{}

		var got obtained
		select {
		case got = <-res: // attempt 2 obtained
			require.NoError(t, held.Release(5*time.Second), "the held release lands")
		case n := <-retry.failed: // attempt 2 failed: C still had attempt 1's key
			require.Equal(t, 2, n)
			require.NoError(t, held.Release(5*time.Second), "the held release lands")
			retry.next <- struct{}{}
			got = <-res
		}
		require.NoError(t, got.err)
		defer got.l.Release(context.Background())
		srvs[0].Exec(t, "DEL", rk) // Z's key on A is gone

		l2, err := y.Obtain(ctx, key, distlock.WithFencing())
		if err == nil {
			defer l2.Release(context.Background())
			t.Fatalf("two holders: X (Err=%v, fence %d) and Y (fence %d)", got.l.Err(), got.l.Fence(), l2.Fence())
		}
		require.ErrorIs(t, err, distlock.ErrNotObtained)
		require.NoError(t, got.l.Err())
	})
}

// TestLockerSpentAttemptCleanupSparesLaterAttempt: the same on a Locker,
// with the clean-up of an attempt whose validity was already spent.
//
//  1. X's acquire is delayed on the way past the TTL: it lands and sets the
//     key, but the attempt's validity is spent, so X gives the key back;
//     that release is held back on its connection.
//  2. X's attempt 2 runs while attempt 1's key is still there.
//  3. The held release lands.
//  4. Y tries: it must not obtain while X believes it holds the lock.
//
// Before the fix attempt 2 re-attached to attempt 1's key with the same
// token, and the late release deleted X's lock.
func TestLockerSpentAttemptCleanupSparesLaterAttempt(t *testing.T) {
	acquire, release := scriptSrc(t, "acquire"), scriptSrc(t, "release")
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		const key = "spent"
		const ttl = 1200 * time.Millisecond
		f := redistest.NewFaults(t)
		x := distlock.New(srv.Client(t, f.Options, func(o *redis.Options) {
			o.ReadTimeout = 3 * time.Second
			o.ContextTimeoutEnabled = true
		}), opts...)
		y := distlock.New(srv.Client(t), opts...)
		srv.Exec(t, "SCRIPT", "LOAD", release) // as after any earlier release

		f.Delay(redistest.And(redistest.Script(acquire), redistest.HasArg(rlKey(key))), ttl+100*time.Millisecond)
		held := f.Hold(redistest.And(redistest.Script(release), redistest.HasArg(rlKey(key))))
		retry := newSteppedRetry(10)
		res := obtainBG(ctx, func(ctx context.Context) (*distlock.Lock, error) {
			return x.Obtain(ctx, key, distlock.WithFencing(), distlock.WithTTL(ttl), distlock.WithAutoRefresh(), distlock.WithRetry(retry))
		})
		require.Equal(t, 1, <-retry.failed)
		waitClosed(t, held.Caught(), waitTimeout, "attempt 1's clean-up")
		retry.next <- struct{}{}

		var got obtained
		select {
		case got = <-res:
			require.NoError(t, held.Release(5*time.Second), "the held release lands")
		case n := <-retry.failed:
			require.Equal(t, 2, n)
			require.NoError(t, held.Release(5*time.Second), "the held release lands")
			retry.next <- struct{}{}
			got = <-res
		}
		require.NoError(t, got.err)
		defer got.l.Release(context.Background())

		l2, err := y.Obtain(ctx, key, distlock.WithFencing())
		if err == nil {
			defer l2.Release(context.Background())
			t.Fatalf("two holders: X (Err=%v, fence %d) and Y (fence %d)", got.l.Err(), got.l.Fence(), l2.Fence())
		}
		require.ErrorIs(t, err, distlock.ErrNotObtained)
		require.NoError(t, got.l.Err())
	})
}

// TestLockerFailedHandOverCleanupSparesLaterAttempt: the same after an
// in-process hand-over of unknown outcome.
//
//  1. H holds the lock; W, of the same Locker, waits for it (parked).
//  2. H releases: the hand-over script runs, but its reply is lost (the
//     connection dies). Not knowing whether W got the lock, H releases W's
//     token; that release is held back on its connection.
//  3. W tries again by itself.
//  4. The held release lands.
//  5. Y tries: it must not obtain while W believes it holds the lock.
//
// Before the fix W's retry re-attached with the token the hand-over had
// written, and the late release deleted W's lock.
func TestLockerFailedHandOverCleanupSparesLaterAttempt(t *testing.T) {
	transfer, release := scriptSrc(t, "transfer"), scriptSrc(t, "release")
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		const key = "handover"
		rk := rlKey(key)
		f := redistest.NewFaults(t)
		// Barging: the hand-over inside a Locker.
		x := distlock.New(srv.Client(t, f.Options, func(o *redis.Options) {
			o.ReadTimeout = 300 * time.Millisecond
		}), append(opts, barging)...)
		y := distlock.New(srv.Client(t), opts...)
		for _, src := range []string{transfer, release} {
			srv.Exec(t, "SCRIPT", "LOAD", src) // as after any earlier use
		}
		// W must be parked when H releases, which the test cannot see
		// directly: a round in which the release found nobody parked is
		// done again.
		for round := 1; ; round++ {
			if round > 20 {
				t.Fatal("no hand-over in 20 rounds")
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			h, err := x.Obtain(ctx, key, distlock.WithTTL(10*time.Second))
			require.NoError(t, err)
			retry := newSteppedRetry(10)
			retry.delay = time.Minute // W waits for a release (or hand-over)
			res := obtainBG(ctx, func(ctx context.Context) (*distlock.Lock, error) {
				return x.Obtain(ctx, key, distlock.WithBlocking(), distlock.WithTTL(10*time.Second), distlock.WithRetry(retry))
			})
			// W tried twice (before and after subscribing) and is about
			// to park.
			require.Equal(t, 1, <-retry.failed)
			dropped := f.DropReply(redistest.And(redistest.Script(transfer), redistest.HasArg(rk)))
			held := f.Hold(redistest.And(redistest.Script(release), redistest.HasArg(rk), redistest.Not(redistest.HasArg(distlock.StoredValue(h)))))
			retry.next <- struct{}{}
			// Give W a moment to park (a round trip to the server); a
			// round in which it did not is done again below.
			srv.Exec(t, "PING")
			_ = h.Release(ctx) // an error: the hand-over's outcome is unknown
			select {
			case <-dropped.Caught():
			default:
				// A plain release: W was not parked yet. Start again.
				f.Clear()
				got := finish(res, retry)
				require.NoError(t, got.err)
				require.NoError(t, got.l.Release(ctx))
				continue
			}
			waitClosed(t, held.Caught(), waitTimeout, "the clean-up of the hand-over")

			var got obtained
			select {
			case got = <-res:
				require.NoError(t, held.Release(5*time.Second), "the held release lands")
			case <-retry.failed: // W's attempt after the hand-over failed
				require.NoError(t, held.Release(5*time.Second), "the held release lands")
				retry.next <- struct{}{}
				got = <-res
			}
			require.NoError(t, got.err)
			defer got.l.Release(context.Background())

			l2, err := y.Obtain(ctx, key)
			if err == nil {
				defer l2.Release(context.Background())
				t.Fatalf("two holders: W (Err=%v) and Y", got.l.Err())
			}
			require.ErrorIs(t, err, distlock.ErrNotObtained)
			require.NoError(t, got.l.Err())
			return
		}
	})
}

// TestReleaseWithLostReplyIsNotReportedAsTakenOver: a release whose reply
// is lost after Redis deleted the lock must not say that the lock was
// taken over.
//
//  1. X holds the lock; its client retries on network errors (go-redis's
//     default MaxRetries).
//  2. X releases: Redis runs the release script and deletes the key, but
//     the connection dies with the reply in flight.
//
// Before the fix go-redis sent the script again, the second run found
// nothing to delete, and Release returned ErrNotHeld ("deleted or taken
// over"). Now the release is never re-sent: Release says its outcome is
// unknown (ErrUnknownOutcome), and a second Release, finding the key gone
// while the lock was still valid, reports success.
func TestReleaseWithLostReplyIsNotReportedAsTakenOver(t *testing.T) {
	release := scriptSrc(t, "release")
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		const key = "lost-reply"
		f := redistest.NewFaults(t)
		x := distlock.New(srv.Client(t, f.Options, func(o *redis.Options) { o.MaxRetries = 3 }), opts...)
		srv.Exec(t, "SCRIPT", "LOAD", release) // as after any earlier release
		l, err := x.Obtain(ctx, key, distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		dropped := f.DropReply(redistest.And(redistest.Script(release), redistest.HasArg(rlKey(key))))
		err = l.Release(ctx)
		waitClosed(t, dropped.Done(), waitTimeout, "the release ran on the server")
		require.Error(t, err)
		assert.NotErrorIs(t, err, distlock.ErrNotHeld, "a lost reply reported as a loss")
		assert.ErrorIs(t, err, distlock.ErrUnknownOutcome)
		assert.Empty(t, rlGet(t, srv, rlKey(key)), "the release ran")
		assert.NoError(t, l.Release(ctx), "a second Release finds its own release done")
	})
}

// TestReleaseOutcomes: Release tells a lock it released from one that
// expired and from one taken over by another holder.
func TestReleaseOutcomes(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))
	l, err := lk.Obtain(ctx, "gone", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	srv.Exec(t, "DEL", rlKey("gone"))
	err = l.Release(ctx)
	require.ErrorIs(t, err, distlock.ErrNotHeld)
	assert.NotErrorIs(t, err, distlock.ErrUnknownOutcome)
	assert.Contains(t, err.Error(), "expired or was deleted")

	l, err = lk.Obtain(ctx, "taken", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	srv.Exec(t, "SET", rlKey("taken"), "someone-else")
	err = l.Release(ctx)
	require.ErrorIs(t, err, distlock.ErrNotHeld)
	assert.Contains(t, err.Error(), "taken over")
	assert.Equal(t, "someone-else", rlGet(t, srv, rlKey("taken")))
}

// TestRedlockReleaseWithLostReplies: the same on a Redlock, where nodes
// that never had the key must not count as "no longer held" either.
//
//  1. Z holds the key on node A; X obtains the lock on B and C.
//  2. X releases: B and C delete the key, but the reply from B is lost.
//
// Before the fix B's release was re-sent and found nothing, and A (which
// never had X's key) and B counted as "no longer held": ErrNotHeld. Now A
// is not asked, B's outcome is unknown, and so is the release's.
func TestRedlockReleaseWithLostReplies(t *testing.T) {
	release := scriptSrc(t, "release")
	rlModes(t, 3, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		const key = "rl-lost-reply"
		rk := rlKey(key)
		f := redistest.NewFaults(t)
		clients := make([]redis.UniversalClient, 3)
		for i, s := range srvs {
			opts := []func(*redis.Options){func(o *redis.Options) {
				o.MaxRetries = 3
				o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
			}}
			if i == 1 {
				opts = append(opts, f.Options)
			}
			clients[i] = s.Client(t, opts...)
		}
		x := distlock.NewRedlock(clients, distlock.WithNodeTimeout(rlNodeTimeout), mode)
		srvs[0].Exec(t, "SET", rk, "Z", "PX", 60000)
		l, err := x.Obtain(ctx, key, distlock.WithTTL(time.Minute))
		require.NoError(t, err)

		dropped := f.DropReply(redistest.And(redistest.Script(release), redistest.HasArg(rk)))
		err = l.Release(ctx)
		waitClosed(t, dropped.Done(), waitTimeout, "the release ran on node B")
		require.Error(t, err)
		assert.NotErrorIs(t, err, distlock.ErrNotHeld, "a lost reply reported as a loss")
		assert.ErrorIs(t, err, distlock.ErrUnknownOutcome)
		var qe *distlock.QuorumError
		require.ErrorAs(t, err, &qe)
		assert.Equal(t, 0, qe.Refused, "nodes that never had the key counted as no longer held: %v", err)
		assert.Equal(t, "Z", rlGet(t, srvs[0], rk))
		assert.Empty(t, rlGet(t, srvs[1], rk))
		assert.Empty(t, rlGet(t, srvs[2], rk))
	})
}

// TestBadInputAtTheEdges: input a new user may well try returns an error
// matching ErrInvalidArgument that names the problem, never a panic.
func TestBadInputAtTheEdges(t *testing.T) {
	ctx := context.Background()
	srvs := redistest.StartN(t, 3)
	lk := distlock.New(srvs[0].Client(t))
	rl := newRL(t, srvs)

	t.Run("nil fn", func(t *testing.T) {
		for name, do := range map[string]func() error{
			"Locker":  func() error { return lk.Do(ctx, "k", nil) },
			"Redlock": func() error { return rl.Do(ctx, "k", nil) },
		} {
			var err error
			require.NotPanics(t, func() { err = do() }, name)
			require.ErrorIs(t, err, distlock.ErrInvalidArgument, name)
			assert.Contains(t, err.Error(), "nil fn", name)
		}
		assert.Empty(t, rlGet(t, srvs[0], rlKey("k")), "a nil fn took the lock")
	})

	t.Run("WithToken as a default", func(t *testing.T) {
		// Every Obtain of such a Locker would re-attach to the lock of
		// every other: no mutual exclusion at all.
		for name, ob := range map[string]obtainer{
			"New":        distlock.New(srvs[0].Client(t), distlock.WithToken("shared")),
			"NewRedlock": distlock.NewRedlock(rlClients(t, srvs), distlock.WithToken("shared")),
		} {
			_, err := ob.Obtain(ctx, "k")
			require.ErrorIs(t, err, distlock.ErrInvalidArgument, name)
			assert.Contains(t, err.Error(), "WithToken", name)
		}
		// Per call it stays valid.
		l, err := lk.Obtain(ctx, "per-call", distlock.WithToken("mine"))
		require.NoError(t, err)
		require.NoError(t, l.Release(ctx))
	})

	t.Run("fewer than 3 Redlock nodes", func(t *testing.T) {
		for n := 1; n < 3; n++ {
			_, err := distlock.NewRedlock(rlClients(t, srvs[:n])).Obtain(ctx, "k")
			require.ErrorIs(t, err, distlock.ErrInvalidArgument, "%d nodes", n)
			assert.Contains(t, err.Error(), "at least 3", "%d nodes", n)
		}
	})
}

// TestErrorsPrintOnOneLine: an Obtain whose ctx ends first matches both
// ErrNotObtained and ctx's error, and prints on one line.
func TestErrorsPrintOnOneLine(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	lk := distlock.New(srvs[0].Client(t))
	rl := newRL(t, srvs)
	for name, ob := range map[string]obtainer{"Locker": lk, "Redlock": rl} {
		held, err := ob.Obtain(context.Background(), "cc")
		require.NoError(t, err)
		// ctx ends while the caller waits, not during an attempt: an
		// attempt that ctx cuts short adds its outcome to the message. So
		// no fallback re-check within the wait (noRecheck: a barging
		// Redlock waiter re-checks about every 200ms), and long enough
		// for the first attempts to be done on a loaded machine.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err = ob.Obtain(ctx, "cc", distlock.WithBlocking(), noRecheck)
		cancel()
		require.ErrorIs(t, err, distlock.ErrNotObtained, name)
		require.ErrorIs(t, err, context.DeadlineExceeded, name)
		assert.NotContains(t, err.Error(), "\n", name)
		assert.Equal(t, `obtain "cc": distlock: not obtained: context deadline exceeded`, err.Error(), name)
		require.NoError(t, held.Release(context.Background()))
	}
}

// TestRedlockRefusedConnectionIsNotATimeout: a node that refuses the
// connection is reported as such, not as a node timeout.
func TestRedlockRefusedConnectionIsNotATimeout(t *testing.T) {
	rlModes(t, 3, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		clients := make([]redis.UniversalClient, 3)
		for i, s := range srvs {
			// go-redis's default dial retries (5, 100ms apart).
			clients[i] = s.Client(t, func(o *redis.Options) { o.DialerRetries = 0 })
		}
		srvs[2].Kill(t) // its port now refuses connections
		rl := distlock.NewRedlock(clients, distlock.WithNodeTimeout(rlNodeTimeout), mode)
		l, err := rl.Obtain(context.Background(), "k")
		require.NoError(t, err, "a quorum of 2 of 3")
		defer l.Release(context.Background())
		err = l.Refresh(context.Background(), 0)
		require.NoError(t, err)
		srvs[1].Kill(t)
		err = l.Refresh(context.Background(), 0)
		var qe *distlock.QuorumError
		require.ErrorAs(t, err, &qe)
		require.Len(t, qe.Errors, 2, "%v", err)
		for _, ne := range qe.Errors {
			assert.NotErrorIs(t, ne, distlock.ErrNodeTimeout, "node %d: %v", ne.Node, ne)
			assert.NotContains(t, ne.Error(), "timeout", "node %d", ne.Node)
			assert.Contains(t, ne.Error(), "refused", "node %d", ne.Node)
		}
	})
}

// TestLostAcquireReplyIsNotContention: an attempt whose reply is lost
// after Redis set the key is not reported as contention.
//
//  1. X's client retries on network errors (go-redis's default).
//  2. X's SET NX runs on the server, but the connection dies with the
//     reply in flight.
//
// Before the fix go-redis sent the SET again, which found X's own key and
// answered "held": Obtain returned ErrNotObtained, and the key, which
// nobody held, blocked everyone for its TTL. Now the SET is not re-sent:
// Obtain returns the connection error and gives the key back.
func TestLostAcquireReplyIsNotContention(t *testing.T) {
	t.Run("Locker", func(t *testing.T) {
		modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
			ctx := context.Background()
			f := redistest.NewFaults(t)
			x := distlock.New(srv.Client(t, f.Options, func(o *redis.Options) { o.MaxRetries = 3 }), opts...)
			dropped := f.DropReply(redistest.And(redistest.Named("set"), redistest.HasArg(rlKey("k"))))
			_, err := x.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
			waitClosed(t, dropped.Done(), waitTimeout, "the SET ran")
			require.Error(t, err)
			assert.NotErrorIs(t, err, distlock.ErrNotObtained, "a lost reply disguised as contention")
			assert.Empty(t, rlGet(t, srv, rlKey("k")), "the key of the failed attempt was left behind")
			l, err := x.Obtain(ctx, "k")
			require.NoError(t, err)
			require.NoError(t, l.Release(ctx))
		})
	})
	t.Run("Redlock", func(t *testing.T) {
		rlModes(t, 3, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
			ctx := context.Background()
			clients := make([]redis.UniversalClient, 3)
			var drops []*redistest.Rule
			for i, s := range srvs {
				opts := []func(*redis.Options){func(o *redis.Options) {
					o.MaxRetries = 3
					o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
				}}
				if i < 2 {
					f := redistest.NewFaults(t)
					drops = append(drops, f.DropReply(redistest.And(redistest.Named("set"), redistest.HasArg(rlKey("k")))))
					opts = append(opts, f.Options)
				}
				clients[i] = s.Client(t, opts...)
			}
			x := distlock.NewRedlock(clients, distlock.WithNodeTimeout(rlNodeTimeout), mode)
			_, err := x.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
			for _, d := range drops {
				waitClosed(t, d.Done(), waitTimeout, "the SET ran")
			}
			require.Error(t, err)
			assert.NotErrorIs(t, err, distlock.ErrNotObtained, "lost replies disguised as contention")
			for i, s := range srvs {
				assert.Empty(t, rlGet(t, s, rlKey("k")), "node %d: the key of the failed attempt was left behind", i)
			}
		})
	})
}

// TestSecondReleaseAfterUnknownOutcome: after a release of unknown outcome
// (its reply lost, the key deleted), another holder Y takes the lock and a
// caller W of the same Locker blocks on it. A second Release must say the
// first one released the lock (nil): not "taken over" (the plain release
// finds Y's token) and not "deleted or taken over" (the hand-over to W finds
// no lock of its own), whichever path it takes.
func TestSecondReleaseAfterUnknownOutcome(t *testing.T) {
	release := scriptSrc(t, "release")
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		const key = "second-release"
		f := redistest.NewFaults(t)
		x := distlock.New(srv.Client(t, f.Options, func(o *redis.Options) { o.MaxRetries = 3 }), opts...)
		y := distlock.New(srv.Client(t), opts...)
		srv.Exec(t, "SCRIPT", "LOAD", release)
		l, err := x.Obtain(ctx, key, distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		dropped := f.DropReply(redistest.And(redistest.Script(release), redistest.HasArg(rlKey(key))))
		require.ErrorIs(t, l.Release(ctx), distlock.ErrUnknownOutcome)
		waitClosed(t, dropped.Done(), waitTimeout, "the release ran on the server")

		ly, err := y.Obtain(ctx, key, distlock.WithTTL(time.Minute))
		require.NoError(t, err)
		wctx, wcancel := context.WithCancel(ctx)
		res := obtainBG(wctx, func(ctx context.Context) (*distlock.Lock, error) {
			return x.Obtain(ctx, key, distlock.WithBlocking())
		})
		srv.Exec(t, "PING") // W is most likely parked by now; either path must answer nil
		assert.NoError(t, l.Release(ctx), "a second Release finds its own release done")
		assert.Equal(t, distlock.StoredValue(ly), rlGet(t, srv, rlKey(key)), "Y's lock was touched")
		wcancel()
		if got := <-res; got.err == nil {
			_ = got.l.Release(ctx)
		}
		require.NoError(t, ly.Release(ctx))
	})
}
