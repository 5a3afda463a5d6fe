package distlock_test

import (
	"context"
	"errors"
	"os"
	"strings"
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
//  2. Stall the proxy (a black-holed node) and let the refresh at TTL/3
//     start: it hangs until the validity's end (about 4s later).
//  3. Release with a 200ms ctx returns within releaseBound plus slack.
func TestReleaseIsBoundedWhileARefreshHangs(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		client, p := proxied(t, srv, true)
		lk := distlock.New(client, opts...)
		l, err := lk.Obtain(context.Background(), "k", append(opts, distlock.WithTTL(6*time.Second), distlock.WithAutoRefresh())...)
		require.NoError(t, err)
		p.Stall(true)
		time.Sleep(2300 * time.Millisecond) // the refresh at TTL/3 starts and hangs
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = l.Release(ctx)
		took := time.Since(start)
		assert.Less(t, took, releaseBound+slack, "Release with a refresh hanging on a black-holed node")
		t.Logf("Release took %v: %v", took, err)
		p.Stall(false)
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

var _ = errors.Is
var _ = strings.Contains
