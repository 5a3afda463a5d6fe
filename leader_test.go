package distlock_test

import (
	"context"
	"errors"
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

// term is one stretch of leadership, as seen by fn.
type term struct {
	who   string
	fence int64
	ctx   context.Context // fn's ctx
	at    time.Time       // when fn started
}

// candidate runs Lead in a goroutine owned by the test. Each time it
// becomes leader it sends the term on terms and waits until the term's ctx
// ends or resign is closed.
type candidate struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Lead's result, set before done closes
}

// leader is a Locker or a Redlock.
type leader interface {
	Lead(ctx context.Context, key string, fn func(context.Context) error, opts ...distlock.Option) error
}

func campaign(t *testing.T, lk leader, who string, terms chan<- term, resign <-chan struct{}, opts ...distlock.Option) *candidate {
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = lk.Lead(ctx, "leader", func(ctx context.Context) error {
			terms <- term{who: who, ctx: ctx, at: time.Now()}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-resign:
				return nil
			}
		}, opts...)
	}()
	t.Cleanup(c.stop)
	return c
}

// stop ends the campaign and waits for Lead to return.
func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

func nextTerm(t *testing.T, terms <-chan term) term {
	t.Helper()
	select {
	case tm := <-terms:
		return tm
	case <-time.After(waitTimeout):
		t.Fatal("no leader within the timeout")
		return term{}
	}
}

func assertNoTerm(t *testing.T, terms <-chan term) {
	t.Helper()
	select {
	case tm := <-terms:
		t.Fatalf("%s became leader too", tm.who)
	default:
	}
}

// TestLeadHandOverWhenLeaderIsCutOff: the leader talks to Redis through a
// proxy that stops forwarding; its refreshes fail, its term's ctx is
// cancelled when the validity runs out, and the other candidate takes over
// once the key expires. The cut-off candidate keeps campaigning and leads
// again when the new leader resigns.
func TestLeadHandOverWhenLeaderIsCutOff(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr())
	t.Cleanup(func() { proxy.Stall(false) })
	viaProxy := srv.Client(t, func(o *redis.Options) { o.Addr = proxy.Addr() })
	// A 5% drift allowance: the old leader's term ends at least 50ms before
	// its key expires in Redis and the new leader can get it.
	ttl := []distlock.Option{distlock.WithTTL(time.Second), distlock.WithDriftFactor(0.05)}

	terms := make(chan term, 4)
	resignA, resignB := make(chan struct{}), make(chan struct{})
	campaign(t, distlock.New(viaProxy), "a", terms, resignA, ttl...)
	first := nextTerm(t, terms)
	require.Equal(t, "a", first.who)
	campaign(t, distlock.New(srv.Client(t)), "b", terms, resignB, ttl...)
	assertNoTerm(t, terms)

	proxy.Stall(true)
	second := nextTerm(t, terms)
	assert.Equal(t, "b", second.who)
	select {
	case <-first.ctx.Done():
		assert.ErrorIs(t, context.Cause(first.ctx), distlock.ErrNotHeld)
	default:
		t.Fatal("the new leader started while the old leader's term was still on")
	}

	proxy.Stall(false)
	assertNoTerm(t, terms)
	close(resignB)
	third := nextTerm(t, terms)
	assert.Equal(t, "a", third.who, "the cut-off candidate campaigned again")
	close(resignA)
}

// TestLeadLossByFlushAll: a FLUSHALL takes the leadership away; the
// leader's term ends at its next refresh and a new term starts.
func TestLeadLossByFlushAll(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	terms := make(chan term, 4)
	never := make(chan struct{})
	ttl := distlock.WithTTL(600 * time.Millisecond)
	campaign(t, distlock.New(srv.Client(t)), "a", terms, never, ttl)
	campaign(t, distlock.New(srv.Client(t)), "b", terms, never, ttl)
	first := nextTerm(t, terms)
	require.NoError(t, client.FlushAll(context.Background()).Err())
	flushed := time.Now()
	select {
	case <-first.ctx.Done():
		assert.Less(t, time.Since(flushed), 600*time.Millisecond/3+2*time.Second, "loss noticed at the next refresh")
		assert.ErrorIs(t, context.Cause(first.ctx), distlock.ErrNotHeld)
	case <-time.After(waitTimeout):
		t.Fatal("leader's ctx not cancelled after FLUSHALL")
	}
	second := nextTerm(t, terms)
	assert.NoError(t, second.ctx.Err(), "a live new term")
}

// TestLeadRedlockHandOver: leadership on a quorum of three nodes survives
// the loss of one node's data (a refresh then takes the key there again),
// and is lost (and handed over) when the nodes lose it. The second loss
// flushes every node: flushing two, one after the other, would let a
// refresh that ran in between heal the first while the third still held
// the key, and the term would rightly stand.
func TestLeadRedlockHandOver(t *testing.T) {
	srvs := redistest.StartN(t, 3)
	rl := func() *distlock.Redlock {
		clients := make([]redis.UniversalClient, len(srvs))
		for i, s := range srvs {
			clients[i] = s.Client(t)
		}
		return distlock.NewRedlock(clients, distlock.WithNodeTimeout(200*time.Millisecond))
	}
	ttl := distlock.WithTTL(900 * time.Millisecond)
	terms := make(chan term, 4)
	never := make(chan struct{})
	campaign(t, rl(), "a", terms, never, ttl)
	first := nextTerm(t, terms)
	campaign(t, rl(), "b", terms, never, ttl)

	srvs[0].Exec(t, "FLUSHALL")
	// Two refresh periods later the term still stands on the other two.
	select {
	case <-first.ctx.Done():
		t.Fatalf("term ended after one node lost the key: %v", context.Cause(first.ctx))
	case <-time.After(2 * 300 * time.Millisecond):
	}
	for _, s := range srvs {
		s.Exec(t, "FLUSHALL")
	}
	select {
	case <-first.ctx.Done():
		assert.ErrorIs(t, context.Cause(first.ctx), distlock.ErrNotHeld)
	case <-time.After(waitTimeout):
		t.Fatal("term not ended after the nodes lost the key")
	}
	second := nextTerm(t, terms)
	assert.NoError(t, second.ctx.Err(), "a live new term")
}

// TestLeadOneLeaderAtATime: three candidates; each leader works a little
// and resigns, and the next takes over. Terms never overlap and fences rise.
func TestLeadOneLeaderAtATime(t *testing.T) {
	srv := redistest.Start(t)
	var inside, overlaps, leads atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		lk := distlock.New(srv.Client(t))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			errs <- lk.Lead(ctx, "leader", func(ctx context.Context) error {
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				defer inside.Add(-1)
				leads.Add(1)
				return ctx.Err() // resign at once
			}, distlock.WithFencing(), distlock.WithTTL(2*time.Second))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err, "a leader that resigns makes Lead return nil")
	}
	assert.Zero(t, overlaps.Load(), "terms overlapped")
	assert.EqualValues(t, 3, leads.Load())
	// The fence counter saw exactly one term per candidate.
	n, err := srv.Client(t).Get(context.Background(), "distlock:{leader}:fence").Int()
	require.NoError(t, err)
	assert.Equal(t, 3, n)
}

// TestLeadCtxEnds: ending ctx while campaigning returns ctx's error; ending
// it while leading cancels fn, releases the leadership at once and returns.
func TestLeadCtxEnds(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t))
	terms := make(chan term, 2)
	never := make(chan struct{})
	leader := campaign(t, lk, "a", terms, never)
	tm := nextTerm(t, terms)

	follower := campaign(t, distlock.New(srv.Client(t)), "b", terms, never)
	follower.stop()
	assert.ErrorIs(t, follower.err, context.Canceled)

	leader.stop()
	assert.ErrorIs(t, leader.err, context.Canceled)
	assert.ErrorIs(t, tm.ctx.Err(), context.Canceled)
	l, err := lk.Obtain(context.Background(), "leader")
	require.NoError(t, err, "leadership released when Lead returned")
	require.NoError(t, l.Release(context.Background()))
}

// TestLeadRidesOutRedisOutage: Redis is down when the campaign starts;
// Lead retries and leads once Redis is back. When ctx ends during the
// outage, the last Redis error comes with ctx's error.
func TestLeadRidesOutRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t))
	srv.Kill(t)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := lk.Lead(ctx, "leader", func(context.Context) error { return errors.New("must not lead") })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "last error")

	terms := make(chan term, 1)
	resign := make(chan struct{})
	c := campaign(t, lk, "a", terms, resign)
	srv.Restart(t)
	nextTerm(t, terms)
	close(resign)
	<-c.done
	assert.NoError(t, c.err)
}

func TestLeadBadInput(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t))
	ctx := context.Background()
	nop := func(context.Context) error { return nil }
	assert.ErrorIs(t, lk.Lead(ctx, "", nop), distlock.ErrInvalidArgument)
	assert.ErrorIs(t, lk.Lead(ctx, "k", nil), distlock.ErrInvalidArgument)
	assert.ErrorIs(t, lk.Lead(ctx, "k", nop, distlock.WithTTL(0)), distlock.ErrInvalidArgument)
	assert.ErrorIs(t, distlock.New(nil).Lead(ctx, "k", nop), distlock.ErrInvalidArgument)
}

// TestLeadLeaderLockAndDefaultTTL: fn reaches its term's Lock through
// LeaderLock(ctx); with WithFencing each term's fence is higher than the
// last. Without a TTL, a leadership lives DefaultLeadTTL (10s), not
// DefaultTTL; a TTL given to New or Lead wins.
func TestLeadLeaderLockAndDefaultTTL(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	assert.Nil(t, distlock.LeaderLock(ctx))

	var fences []int64
	for _, tt := range []struct {
		lk      *distlock.Locker
		opts    []distlock.Option
		wantTTL time.Duration
	}{
		{distlock.New(srv.Client(t)), nil, distlock.DefaultLeadTTL},
		{distlock.New(srv.Client(t), distlock.WithTTL(3*time.Second)), nil, 3 * time.Second},
		{distlock.New(srv.Client(t)), []distlock.Option{distlock.WithTTL(2 * time.Second)}, 2 * time.Second},
	} {
		err := tt.lk.Lead(ctx, "leader", func(ctx context.Context) error {
			l := distlock.LeaderLock(ctx)
			require.NotNil(t, l)
			assert.Equal(t, "leader", l.Key())
			fences = append(fences, l.Fence())
			ttl, err := l.TTL(ctx)
			require.NoError(t, err)
			assert.LessOrEqual(t, ttl, tt.wantTTL)
			assert.Greater(t, ttl, tt.wantTTL-time.Second)
			return nil
		}, append(tt.opts, distlock.WithFencing())...)
		require.NoError(t, err)
	}
	assert.Equal(t, []int64{1, 2, 3}, fences)
}

// TestLeadStopsBeforeExpiry: the leader is cut off from Redis (a proxy
// that stops forwarding), so its refreshes fail. Its fn's ctx must be
// cancelled the stop margin before the leadership could expire, while the
// lock is still valid, and the other candidate must not lead until about
// that margin later. When the new leader resigns, the cut-off candidate
// (which kept campaigning) leads again.
func TestLeadStopsBeforeExpiry(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr())
	t.Cleanup(func() { proxy.Stall(false) })
	viaProxy := srv.Client(t, func(o *redis.Options) { o.Addr = proxy.Addr() })
	const margin = 300 * time.Millisecond
	opts := []distlock.Option{distlock.WithTTL(time.Second), distlock.WithStopMargin(margin)}

	type stop struct {
		at    time.Time
		left  time.Duration // validity left when fn saw its ctx end
		held  error         // the Lock's Err then
		cause error
	}
	stops := make(chan stop, 4)
	aTerms := make(chan struct{}, 4)
	ctx, cancel := context.WithCancel(context.Background())
	aDone := make(chan error, 1)
	go func() {
		aDone <- distlock.New(viaProxy).Lead(ctx, "leader", func(ctx context.Context) error {
			aTerms <- struct{}{}
			<-ctx.Done()
			l := distlock.LeaderLock(ctx)
			stops <- stop{at: time.Now(), left: time.Until(l.ValidUntil()), held: l.Err(), cause: context.Cause(ctx)}
			return ctx.Err()
		}, opts...)
	}()
	defer func() {
		cancel()
		select {
		case <-aDone:
		case <-time.After(waitTimeout):
			t.Error("Lead did not return after its ctx ended")
		}
	}()
	select {
	case <-aTerms:
	case <-time.After(waitTimeout):
		t.Fatal("a did not lead")
	}
	terms := make(chan term, 4)
	resignB := make(chan struct{})
	campaign(t, distlock.New(srv.Client(t)), "b", terms, resignB, opts...)
	assertNoTerm(t, terms)

	proxy.Stall(true)
	var st stop
	select {
	case st = <-stops:
	case <-time.After(waitTimeout):
		t.Fatal("the cut-off leader's ctx was not cancelled")
	}
	assert.ErrorIs(t, st.cause, distlock.ErrNotHeld)
	assert.Contains(t, st.cause.Error(), "stopped 300ms before")
	assert.NoError(t, st.held, "stopped while the lock was still valid")
	assert.Greater(t, st.left, margin/2, "stopped too close to the expiry")
	assert.LessOrEqual(t, st.left, margin)

	second := nextTerm(t, terms)
	assert.Equal(t, "b", second.who)
	assert.GreaterOrEqual(t, second.at.Sub(st.at), margin*3/4, "the new leader started too soon after the old one stopped")

	proxy.Stall(false)
	close(resignB)
	select {
	case <-aTerms:
	case <-time.After(waitTimeout):
		t.Fatal("the stopped candidate did not campaign again")
	}
}

func TestLeadBadStopMargin(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t))
	nop := func(context.Context) error { return nil }
	for _, m := range []time.Duration{-time.Millisecond, 501 * time.Millisecond} {
		err := lk.Lead(context.Background(), "k", nop, distlock.WithTTL(time.Second), distlock.WithStopMargin(m))
		assert.ErrorIs(t, err, distlock.ErrInvalidArgument, "margin %v", m)
	}
	assert.Equal(t, "WithStopMargin(2s)", distlock.WithStopMargin(2*time.Second).String())
}
