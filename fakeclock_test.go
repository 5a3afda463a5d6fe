package distlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
)

// Fake-clock tests: miniredis lets the server's clock jump (FastForward),
// so expiry edges can be checked to the millisecond without waiting.

func newFakeClock(t *testing.T) (*miniredis.Miniredis, func() *distlock.Locker) {
	mr := miniredis.RunT(t)
	return mr, func() *distlock.Locker {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		return distlock.New(c, distlock.WithPipelining(false))
	}
}

func TestFakeClockExpiryEdge(t *testing.T) {
	ctx := context.Background()
	mr, newLocker := newFakeClock(t)
	a, b := newLocker(), newLocker()
	l, err := a.Obtain(ctx, "k", distlock.WithTTL(10*time.Second))
	require.NoError(t, err)

	mr.FastForward(10*time.Second - time.Millisecond)
	_, err = b.Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrNotObtained, "1ms before expiry")
	ttl, err := l.TTL(ctx)
	require.NoError(t, err)
	assert.Equal(t, time.Millisecond, ttl)

	mr.FastForward(time.Millisecond)
	taken, err := b.Obtain(ctx, "k")
	require.NoError(t, err, "at expiry")
	require.ErrorIs(t, l.Refresh(ctx, 0), distlock.ErrNotHeld)
	require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)
	got, err := mr.Get("distlock:{k}")
	require.NoError(t, err)
	assert.Equal(t, distlock.StoredValue(taken), got, "the stale holder left the new one alone")
}

func TestFakeClockRefreshExtends(t *testing.T) {
	ctx := context.Background()
	mr, newLocker := newFakeClock(t)
	a, b := newLocker(), newLocker()
	l, err := a.Obtain(ctx, "k", distlock.WithTTL(10*time.Second))
	require.NoError(t, err)
	for i := 0; i < 5; i++ {
		mr.FastForward(9 * time.Second)
		require.NoError(t, l.Refresh(ctx, 0), "refresh %d", i)
	}
	mr.FastForward(9 * time.Second)
	_, err = b.Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrNotObtained, "45s into a 10s lock refreshed every 9s")
	// A refresh with another TTL sets exactly that TTL.
	require.NoError(t, l.Refresh(ctx, 2*time.Second))
	ttl, err := l.TTL(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, ttl)
	mr.FastForward(2 * time.Second)
	_, err = b.Obtain(ctx, "k")
	require.NoError(t, err)
}

func TestFakeClockFenceOutlivesLock(t *testing.T) {
	ctx := context.Background()
	mr, newLocker := newFakeClock(t)
	lk := newLocker()
	var last int64
	for i := 0; i < 3; i++ {
		l, err := lk.Obtain(ctx, "k", distlock.WithTTL(time.Second), distlock.WithFencing())
		require.NoError(t, err)
		require.Greater(t, l.Fence(), last)
		last = l.Fence()
		mr.FastForward(time.Hour) // the lock expires, the counter must not
		assert.False(t, mr.Exists("distlock:{k}"))
		assert.True(t, mr.Exists("distlock:{k}:fence"))
	}
}
