package distlock_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// Liveness at the edges: a call returns by its ctx (plus a stated slack),
// and never hands out a lock whose validity has passed.

// slack is what these tests allow beyond a call's bound: generous, for a
// loaded 2-core machine running the race detector.
const slack = 500 * time.Millisecond

// releaseBound is Release's documented least bound (releaseTimeout).
const releaseBound = time.Second

// proxied returns a client of srv through a new proxy, with long socket
// timeouts (so that only ctx can bound a call) and ctx deadlines applied
// to the socket when ctxTimeouts.
func proxied(t *testing.T, srv *redistest.Server, ctxTimeouts bool) (*redis.Client, *redistest.Proxy) {
	t.Helper()
	p := redistest.NewProxy(t, srv.Addr())
	c := srv.Client(t, func(o *redis.Options) {
		o.Addr = p.Addr()
		o.ReadTimeout, o.WriteTimeout = 10*time.Second, 10*time.Second
		o.ContextTimeoutEnabled = ctxTimeouts
	})
	// Stalled connections must not hold the test up at clean-up.
	t.Cleanup(func() { p.Stall(false) })
	return c, p
}

// degrade makes the node behind p "slow" (latency each way) or
// "black-holed" (nothing passes); any other fault leaves p alone.
func degrade(p *redistest.Proxy, fault string, latency time.Duration) {
	switch fault {
	case "slow":
		p.SetLatency(latency)
	case "black-holed":
		p.Stall(true)
	}
}

// TestReleaseWithEndedCtxFreesTheLock: defer l.Release(ctx) with a request
// ctx that ended (a client disconnect) must still free the lock, not keep
// it for its whole TTL.
//  1. Obtain with a one-minute TTL.
//  2. The request's ctx is cancelled.
//  3. Release(ctx) returns nil and the key is gone from Redis.
func TestReleaseWithEndedCtxFreesTheLock(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		lk := distlock.New(srv.Client(t), opts...)
		for _, auto := range []bool{false, true} {
			o := append([]distlock.Option{distlock.WithTTL(time.Minute)}, opts...)
			if auto {
				o = append(o, distlock.WithAutoRefresh())
			}
			ctx, cancel := context.WithCancel(context.Background())
			l, err := lk.Obtain(ctx, "k", o...)
			require.NoError(t, err)
			cancel()
			start := time.Now()
			require.NoError(t, l.Release(ctx), "auto-refresh %v", auto)
			assert.Less(t, time.Since(start), releaseBound+slack)
			assert.Equal(t, "", rlGet(t, srv, rlKey("k")), "lock kept after Release with an ended ctx")
			assert.NoError(t, l.Err())
		}
	})
}

// TestReleaseAfterKnownLossReturnsAtOnce: once the lock is known to be
// lost, Release answers ErrNotHeld without a round trip (it used to wait
// for a Redis that is down), and the loss carries the last refresh error
// as its cause, on one line.
//  1. Obtain with auto-refresh, TTL 400ms, on a client that gives up after
//     100ms.
//  2. Pause Redis: every refresh times out until the validity runs out.
//  3. Err matches ErrNotHeld and the timeout; Release returns ErrNotHeld
//     at once (well before the client's 100ms timeout would allow a round
//     trip).
func TestReleaseAfterKnownLossReturnsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t, shortTimeouts))
	ctx := context.Background()
	l, err := lk.Obtain(ctx, "k", distlock.WithTTL(400*time.Millisecond), distlock.WithAutoRefresh())
	require.NoError(t, err)
	srv.Pause(t)
	defer srv.Resume(t)
	waitClosed(t, l.Done(), waitTimeout, "Done during an outage")

	lost := l.Err()
	require.ErrorIs(t, lost, distlock.ErrNotHeld)
	assert.ErrorIs(t, lost, os.ErrDeadlineExceeded, "the refresh's timeout as the cause")
	assert.NotContains(t, lost.Error(), "\n")
	t.Logf("loss: %v", lost)

	start := time.Now()
	err = l.Release(ctx)
	took := time.Since(start)
	require.ErrorIs(t, err, distlock.ErrNotHeld)
	assert.Less(t, took, 50*time.Millisecond, "Release after a known loss")
	t.Logf("Release after a known loss took %v: %v", took, err)
}

// TestReleaseIsBoundedWhileARefreshHangs: Release used to wait for an
// auto-refresh in flight for as long as that refresh took, up to the
// lock's validity, whatever its own ctx said.
//  1. Obtain with auto-refresh, TTL 6s, through a proxy; the client applies
//     ctx deadlines to the socket and has 10s socket timeouts.
//  2. The refresh at TTL/3 is held back on its connection (as by a
//     black-holed node) and hangs until the validity's end (about 4s later).
//  3. Release with a 200ms ctx returns within releaseBound plus slack.
func TestReleaseIsBoundedWhileARefreshHangs(t *testing.T) {
	refresh := scriptSrc(t, "refresh")
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		f := redistest.NewFaults(t)
		client := srv.Client(t, f.Options, func(o *redis.Options) {
			o.ReadTimeout, o.WriteTimeout = 10*time.Second, 10*time.Second
			o.ContextTimeoutEnabled = true
		})
		lk := distlock.New(client, opts...)
		held := f.Hold(redistest.And(redistest.Script(refresh), redistest.HasArg(rlKey("k"))))
		l, err := lk.Obtain(context.Background(), "k", append(opts, distlock.WithTTL(6*time.Second), distlock.WithAutoRefresh())...)
		require.NoError(t, err)
		waitClosed(t, held.Caught(), waitTimeout, "the refresh at TTL/3")
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = l.Release(ctx)
		took := time.Since(start)
		assert.Less(t, took, releaseBound+slack, "Release with a refresh hanging on its connection")
		t.Logf("Release took %v: %v", took, err)
		require.NoError(t, held.Release(5*time.Second))
	})
}

// TestReleaseOnSlowNodeFinishes: a Release whose ctx ends mid-call on a
// slow node still frees the lock, within its own bound.
//  1. Obtain through a proxy (the release script already loaded), then add
//     300ms latency each way.
//  2. Release with a 200ms ctx: the round trip takes 600ms.
//  3. It returns nil within releaseBound plus slack; the key is gone.
func TestReleaseOnSlowNodeFinishes(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		client, p := proxied(t, srv, true)
		lk := distlock.New(client, opts...)
		warm, err := lk.Obtain(context.Background(), "warm")
		require.NoError(t, err)
		require.NoError(t, warm.Release(context.Background())) // loads the script
		l, err := lk.Obtain(context.Background(), "k", append(opts, distlock.WithTTL(time.Minute))...)
		require.NoError(t, err)
		p.SetLatency(300 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		require.NoError(t, l.Release(ctx))
		assert.Less(t, time.Since(start), releaseBound+slack)
		assert.Equal(t, "", rlGet(t, srv, rlKey("k")))
	})
}

// TestPipelinedCommandHonoursCtxBehindAStalledOne: a command that joins
// the autopipeliner while another one hangs on a stalled connection
// returns by its own ctx (it used to wait for the socket timeout).
//  1. Two locks through a proxy; the client has 10s socket timeouts and
//     does not apply ctx deadlines.
//  2. Stall the proxy; a refresh of the first lock hangs (plain path).
//  3. A refresh of the second, with a 200ms ctx, goes through the
//     autopipeliner and returns ctx's error by 200ms plus slack.
func TestPipelinedCommandHonoursCtxBehindAStalledOne(t *testing.T) {
	srv := redistest.Start(t)
	client, p := proxied(t, srv, false)
	lk := distlock.New(client)
	ctx := context.Background()
	a, err := lk.Obtain(ctx, "a", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	b, err := lk.Obtain(ctx, "b", distlock.WithTTL(time.Minute))
	require.NoError(t, err)

	p.Stall(true)
	hung := make(chan error, 1)
	go func() { hung <- a.Refresh(ctx, 0) }()
	require.Eventually(t, func() bool { return distlock.Inflight(lk) == 1 }, waitTimeout, time.Millisecond)

	bctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = b.Refresh(bctx, 0)
	took := time.Since(start)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, took, 200*time.Millisecond+slack, "pipelined refresh behind a stalled one")
	t.Logf("pipelined refresh returned after %v: %v", took, err)

	p.Stall(false)
	select {
	case err := <-hung:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("the hung refresh did not return after the stall")
	}
	require.NoError(t, a.Release(ctx))
	require.NoError(t, b.Release(ctx))
}

// TestRedlockBlockedObtainWithBlackHoledNode: a blocked Redlock Obtain
// with one black-holed (or slow) node returns by its ctx, and never returns
// a lock whose validity has passed. The subscription to each node used to
// be set up and torn down on the caller's path, one node after another,
// without the caller's ctx: each cost the black-holed client's read
// timeout.
//  1. Three nodes; the waiter reaches node 0 through a proxy (its client
//     has 10s socket timeouts), the others directly. The proxy is stalled,
//     or slow (300ms each way, beyond the 200ms node timeout).
//  2. Another Redlock holds the lock for a minute: Obtain with a 1s ctx
//     returns ErrNotObtained and DeadlineExceeded by 1s plus slack.
//  3. The holder's lock expires 1.5s after it is taken: a blocked Obtain
//     (TTL 2s, ctx 10s) obtains it on the two healthy nodes soon after,
//     with its validity ahead.
func TestRedlockBlockedObtainWithBlackHoledNode(t *testing.T) {
	for _, fault := range []string{"black-holed", "slow"} {
		t.Run(fault, func(t *testing.T) {
			srvs := redistest.StartN(t, 3)
			slow, p := proxied(t, srvs[0], false)
			clients := rlClients(t, srvs)
			clients[0] = slow
			waiter := distlock.NewRedlock(clients, distlock.WithNodeTimeout(rlNodeTimeout))
			holder := newRL(t, srvs)
			if fault == "slow" {
				p.SetLatency(300 * time.Millisecond)
			} else {
				p.Stall(true)
			}

			h, err := holder.Obtain(context.Background(), "k", distlock.WithTTL(time.Minute))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			l, err := waiter.Obtain(ctx, "k", distlock.WithBlocking(), distlock.WithTTL(2*time.Second))
			took := time.Since(start)
			require.Nil(t, l)
			assert.ErrorIs(t, err, distlock.ErrNotObtained)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Less(t, took, time.Second+slack, "blocked Obtain with a 1s ctx and a %s node", fault)
			t.Logf("blocked Obtain with a 1s ctx returned after %v", took)
			require.NoError(t, h.Release(context.Background()))

			const holderTTL = 1500 * time.Millisecond
			h, err = holder.Obtain(context.Background(), "k", distlock.WithTTL(holderTTL))
			require.NoError(t, err)
			expires := time.Now().Add(holderTTL)
			ctx, cancel = context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			l, err = waiter.Obtain(ctx, "k", distlock.WithBlocking(), distlock.WithTTL(2*time.Second))
			require.NoError(t, err)
			returned := time.Now()
			assert.True(t, returned.Before(l.ValidUntil()), "Obtain returned a lock whose validity had passed (ValidUntil %v ago)", returned.Sub(l.ValidUntil()))
			assert.NoError(t, l.Err())
			assert.Less(t, returned.Sub(expires), time.Second+slack, "obtained long after the holder expired")
			t.Logf("obtained %v after the holder's expiry, validity %v ahead", returned.Sub(expires), l.ValidUntil().Sub(returned))
			_ = l.Release(context.Background())
			p.Stall(false)
		})
	}
}

// TestClaimedWaiterReturnsByItsCtx: a waiter claimed for an in-process
// hand-over returns by its own ctx, and the lock the hand-over took for it
// afterwards is given back. It used to wait for the hand-over's outcome,
// however long the releaser's round trip took, and return the lock.
//  1. Holder and waiter share a Locker whose client goes through a proxy;
//     the waiter parks.
//  2. The link gets slow (400ms each way: the transfer script takes 800ms)
//     or black-holed (stalled until the waiter has returned), and the
//     holder releases: the waiter is claimed.
//  3. The waiter's ctx is cancelled 200ms into the release: it returns
//     ErrNotObtained and Canceled within slack.
//  4. Once the release returned, the key is free (given back).
func TestClaimedWaiterReturnsByItsCtx(t *testing.T) {
	for _, fault := range []string{"slow", "black-holed"} {
		t.Run(fault, func(t *testing.T) {
			srv := redistest.Start(t)
			client, p := proxied(t, srv, false)
			lk := distlock.New(client, barging) // the hand-over inside a Locker
			ctx := context.Background()
			// Load the scripts first, so that no NOSCRIPT round trip is timed.
			warm, err := lk.Obtain(ctx, "warm", distlock.WithFencing())
			require.NoError(t, err)
			require.NoError(t, warm.Release(ctx))

			h, err := lk.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
			require.NoError(t, err)
			wctx, wcancel := context.WithCancel(ctx)
			defer wcancel()
			got := obtainAsync(wctx, lk, "k", distlock.WithTTL(time.Minute))
			require.Eventually(t, func() bool { return distlock.Parked(lk, "k") }, waitTimeout, time.Millisecond)

			if fault == "slow" {
				p.SetLatency(400 * time.Millisecond)
			} else {
				p.Stall(true)
			}
			released := make(chan error, 1)
			go func() { released <- h.Release(ctx) }()
			cancelled := time.Now()
			stop := time.AfterFunc(200*time.Millisecond, wcancel) // the waiter's ctx ends mid-hand-over
			defer stop.Stop()
			select {
			case o := <-got:
				took := o.at.Sub(cancelled) - 200*time.Millisecond
				assert.Nil(t, o.l, "a waiter whose ctx ended got a lock")
				assert.ErrorIs(t, o.err, distlock.ErrNotObtained)
				assert.ErrorIs(t, o.err, context.Canceled)
				assert.Less(t, took, slack, "claimed waiter returned this long after its ctx ended")
				t.Logf("claimed waiter returned %v after its ctx ended", took)
				if o.l != nil {
					_ = o.l.Release(ctx)
				}
			case <-time.After(waitTimeout):
				t.Fatal("claimed waiter did not return")
			}
			p.Stall(false)
			select {
			case err := <-released:
				require.NoError(t, err)
			case <-time.After(waitTimeout):
				t.Fatal("release did not return")
			}
			assert.Equal(t, "", rlGet(t, srv, rlKey("k")), "the lock handed to a waiter that left was kept")
		})
	}
}

// blackhole forwards TCP connections to a target and can swallow all
// bytes of one connection in both directions while keeping it open: the
// half-open path that a vanished peer or a dropped NAT entry leaves.
type blackhole struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu       sync.Mutex
	conns    []net.Conn // client side, in accept order
	swallow  map[int]bool
	peers    []net.Conn
	accepted chan struct{}
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &blackhole{target: target, ln: ln, swallow: make(map[int]bool)}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range append(b.conns, b.peers...) {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *blackhole) Addr() string { return b.ln.Addr().String() }

// Conns returns the number of connections accepted so far.
func (b *blackhole) Conns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// Swallow makes connection i (in accept order) swallow every byte.
func (b *blackhole) Swallow(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.swallow[i] = true
}

func (b *blackhole) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", b.target)
		if err != nil {
			c.Close()
			continue
		}
		b.mu.Lock()
		i := len(b.conns)
		b.conns = append(b.conns, c)
		b.peers = append(b.peers, s)
		b.mu.Unlock()
		b.wg.Add(2)
		go b.pipe(i, s, c)
		go b.pipe(i, c, s)
	}
}

func (b *blackhole) pipe(i int, dst, src net.Conn) {
	defer b.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		b.mu.Lock()
		swallowed := b.swallow[i]
		b.mu.Unlock()
		if n > 0 && !swallowed {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				src.Close()
			}
			return
		}
	}
}

// TestHalfOpenSubscriptionIsNoticed: a subscription connection that goes
// half-open is noticed by the health check, replaced, and its waiters are
// woken, within 2×healthInterval (2s) plus slack. It used to be trusted for
// ever: every wake-up on it was lost.
//  1. A waiter (fallback one minute, so only a wake-up can be prompt)
//     blocks through a forwarder: connection 0 carries its commands,
//     connection 1 its subscription.
//  2. Connection 1 starts swallowing every byte (half-open).
//  3. Another Locker releases: the wake-up is lost on connection 1.
//  4. The waiter obtains within 2s plus slack of the release.
func TestHalfOpenSubscriptionIsNoticed(t *testing.T) {
	srv := redistest.Start(t)
	bh := newBlackhole(t, srv.Addr())
	waiter := distlock.New(srv.Client(t, func(o *redis.Options) {
		o.Addr = bh.Addr()
		o.ReadTimeout, o.WriteTimeout = 10*time.Second, 10*time.Second
	}), distlock.WithPipelining(false))
	holder := distlock.New(srv.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	h, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	got := obtainAsync(ctx, waiter, "k", distlock.WithRetry(distlock.LinearBackoff(time.Minute)))
	require.Eventually(t, func() bool { return distlock.Parked(waiter, "k") }, waitTimeout, time.Millisecond)
	require.Equal(t, 2, bh.Conns(), "one command and one subscription connection")
	bh.Swallow(1)

	released := time.Now()
	require.NoError(t, h.Release(ctx))
	select {
	case o := <-got:
		require.NoError(t, o.err)
		took := o.at.Sub(released)
		assert.Less(t, took, 2*time.Second+slack+slack, "wake-up on a half-open subscription")
		t.Logf("obtained %v after the release, through a half-open subscription", took)
		require.NoError(t, o.l.Release(ctx))
	case <-time.After(waitTimeout):
		t.Fatal("waiter on a half-open subscription not woken")
	}
}

// TestReleaseWithoutChannelPermission: a user without permission on the
// wake channels (Redis 7 gives new users none) can still release: the
// release that freed the lock reports success, the lost wake-up is
// counted (Locker.LostWakeups), and a blocked caller of another process
// obtains the lock at its next capped re-check. Release used to report
// the PUBLISH's NOPERM although the lock was gone.
//  1. ACL user "nochan": the lock commands on ~distlock:*, no channel.
//  2. It obtains and releases: nil, the key is gone, LostWakeups is 1.
//  3. It obtains again; a caller with full rights blocks on the lock;
//     "nochan" releases; the caller obtains within the default re-check
//     cap (2s) plus slack.
func TestReleaseWithoutChannelPermission(t *testing.T) {
	srv := redistest.Start(t)
	srv.Exec(t, "ACL", "SETUSER", "nochan", "on", ">p", "resetkeys", "~distlock:*", "resetchannels", "-@all",
		"+set", "+get", "+del", "+pexpire", "+pttl", "+incr", "+publish", "+evalsha", "+eval", "+subscribe", "+unsubscribe")
	lk := distlock.New(srv.Client(t, func(o *redis.Options) { o.Username, o.Password = "nochan", "p" }))
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()

	l, err := lk.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx), "a release that freed the lock")
	assert.Equal(t, "", rlGet(t, srv, rlKey("k")))
	assert.EqualValues(t, 1, lk.LostWakeups())

	l, err = lk.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	other := distlock.New(srv.Client(t))
	got := obtainAsync(ctx, other, "k")
	require.Eventually(t, func() bool { return distlock.Parked(other, "k") }, waitTimeout, time.Millisecond)
	released := time.Now()
	require.NoError(t, l.Release(ctx))
	assert.EqualValues(t, 2, lk.LostWakeups())
	o := waitObtained(t, got)
	assert.Less(t, o.at.Sub(released), 2*time.Second+slack, "a waiter after a release whose wake-up was lost")
	t.Logf("the waiter obtained %v after a release that could not publish", o.at.Sub(released))
	require.NoError(t, o.l.Release(ctx))
}

// TestRedlockReleaseWithoutChannelPermission: the same on a Redlock whose
// users have no channel permission on any node: Release succeeds.
func TestRedlockReleaseWithoutChannelPermission(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	clients := make([]redis.UniversalClient, len(srvs))
	for i, s := range srvs {
		s.Exec(t, "ACL", "SETUSER", "nochan", "on", ">p", "resetkeys", "~distlock:*", "resetchannels", "-@all",
			"+set", "+get", "+del", "+pexpire", "+pttl", "+incr", "+publish", "+evalsha", "+eval")
		clients[i] = s.Client(t, func(o *redis.Options) { o.Username, o.Password = "nochan", "p" })
	}
	rl := distlock.NewRedlock(clients, distlock.WithNodeTimeout(rlNodeTimeout))
	ctx := context.Background()
	l, err := rl.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
	for _, s := range srvs {
		assert.Equal(t, "", rlGet(t, s, rlKey("k")))
	}
}

// TestBlockedObtainReturnsByCtx: a blocked Locker Obtain whose ctx ends
// mid-call returns by ctx's deadline plus slack, with an error matching
// ErrNotObtained and DeadlineExceeded, and no lock, on a slow node (300ms
// each way), a black-holed one (proxy stalled from the start) and a paused
// one (SIGSTOP once the caller waits), pipelining on and off. The client
// applies ctx deadlines to its socket (ContextTimeoutEnabled) and has 10s
// socket timeouts: without the former a plain command is bounded by those
// timeouts instead (see New). The slack covers the clean-up of the attempt
// that ctx cut short (abandonTimeout, 250ms), which is waited for: the
// calls return about 1.25s after they began.
func TestBlockedObtainReturnsByCtx(t *testing.T) {
	const deadline = time.Second
	for _, fault := range []string{"slow", "black-holed", "paused"} {
		t.Run(fault, func(t *testing.T) {
			modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
				client, p := proxied(t, srv, true)
				waiter := distlock.New(client, opts...)
				holder := distlock.New(srv.Client(t))
				h, err := holder.Obtain(context.Background(), "k", distlock.WithTTL(time.Minute))
				require.NoError(t, err)
				degrade(p, fault, 300*time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				start := time.Now()
				got := obtainAsync(ctx, waiter, "k", opts...)
				if fault == "paused" {
					require.Eventually(t, func() bool { return distlock.Parked(waiter, "k") }, deadline, time.Millisecond)
					srv.Pause(t)
					defer srv.Resume(t)
				}
				select {
				case o := <-got:
					took := o.at.Sub(start)
					require.Nil(t, o.l, "a lock held by another was handed out")
					assert.ErrorIs(t, o.err, distlock.ErrNotObtained)
					assert.ErrorIs(t, o.err, context.DeadlineExceeded)
					assert.Less(t, took, deadline+slack)
					t.Logf("returned after %v: %v", took, o.err)
				case <-time.After(waitTimeout):
					t.Fatal("blocked Obtain did not return")
				}
				if fault == "paused" {
					srv.Resume(t)
				}
				p.Stall(false)
				require.NoError(t, h.Release(context.Background()))
			})
		})
	}
}

// TestHealthCheckWithoutPingPermission: the subscription's health check
// sends PING; a user without +ping gets NOPERM, which proves the
// connection alive just as well and must not wake the waiters (each
// wake-up costs an attempt).
//  1. User "noping": the minimal ACL (README), channels included, no PING.
//  2. It blocks for 3.5s on a held lock, with a one-minute retry delay, so
//     that only wake-ups make it attempt.
//  3. It sent at most 4 lock scripts: the first try, the retry after
//     subscribing, one after the subscription's confirmation when that came
//     later, and one spare. (Woken by every NOPERM, it sent one more per
//     second: 6 in all.)
func TestHealthCheckWithoutPingPermission(t *testing.T) {
	srv := redistest.Start(t)
	srv.Exec(t, "ACL", "SETUSER", "noping", "on", ">p", "resetkeys", "~distlock:*", "resetchannels", "&distlock:*", "-@all",
		"+set", "+get", "+del", "+pexpire", "+pttl", "+incr", "+publish", "+evalsha", "+eval", "+subscribe", "+unsubscribe")
	waiter := distlock.New(srv.Client(t, func(o *redis.Options) { o.Username, o.Password = "noping", "p" }))
	holder := distlock.New(srv.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	h, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)

	before := scriptCalls(t, srv)
	wctx, wcancel := context.WithTimeout(ctx, 3500*time.Millisecond) // the wait being measured
	defer wcancel()
	_, err = waiter.Obtain(wctx, "k", distlock.WithBlocking(), distlock.WithRetry(distlock.LinearBackoff(time.Minute)))
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	during := scriptCalls(t, srv) - before
	assert.LessOrEqual(t, during, int64(4), "lock scripts from one waiter blocked 3.5s")
	t.Logf("lock scripts during a 3.5s wait without +ping: %d", during)
	require.NoError(t, h.Release(ctx))
}
