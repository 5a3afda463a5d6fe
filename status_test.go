package distlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

func TestStatus(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	lk := distlock.New(srv.Client(t))

	st, err := lk.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, distlock.LockStatus{Key: "k"}, st, "never used")

	var last int64
	for range 2 {
		l, err := lk.Obtain(ctx, "k", distlock.WithFencing(), distlock.WithTTL(20*time.Second))
		require.NoError(t, err)
		st, err = lk.Status(ctx, "k")
		require.NoError(t, err)
		assert.True(t, st.Held)
		assert.Greater(t, st.TTL, 19*time.Second)
		assert.LessOrEqual(t, st.TTL, 20*time.Second)
		assert.Equal(t, l.Fence(), st.Fence)
		assert.Greater(t, st.Fence, last)
		last = st.Fence
		require.NoError(t, l.Release(ctx))
	}
	st, err = lk.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, distlock.LockStatus{Key: "k", Fence: last}, st, "free, fence kept")

	// Another prefix is another namespace.
	l, err := lk.Obtain(ctx, "k", distlock.WithKeyPrefix("other:"))
	require.NoError(t, err)
	st, err = lk.Status(ctx, "k")
	require.NoError(t, err)
	assert.False(t, st.Held)
	st, err = lk.Status(ctx, "k", distlock.WithKeyPrefix("other:"))
	require.NoError(t, err)
	assert.True(t, st.Held)
	require.NoError(t, l.Release(ctx))

	// A lock key without expiry reports -1.
	require.NoError(t, srv.Client(t).Set(ctx, "distlock:{manual}", "x", 0).Err())
	st, err = lk.Status(ctx, "manual")
	require.NoError(t, err)
	assert.Equal(t, distlock.LockStatus{Key: "manual", Held: true, TTL: -1}, st)

	_, err = lk.Status(ctx, "")
	assert.ErrorIs(t, err, distlock.ErrInvalidArgument)
	_, err = distlock.New(nil).Status(ctx, "k")
	assert.ErrorIs(t, err, distlock.ErrInvalidArgument)
	srv.Kill(t)
	_, err = lk.Status(ctx, "k")
	require.Error(t, err)
	assert.NotErrorIs(t, err, distlock.ErrInvalidArgument)
}
