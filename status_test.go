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

// TestStatusDone: a key that Once marked done reports Held and Done, with
// the rest of the window as TTL, on a Locker and on a Redlock.
func TestStatusDone(t *testing.T) {
	ctx := context.Background()
	srvs := redistest.StartN(t, 3)
	for name, ls := range map[string]distlock.LockService{
		"Locker":  distlock.New(srvs[0].Client(t)),
		"Redlock": newRL(t, srvs),
	} {
		key := "done-" + name
		require.NoError(t, ls.Once(ctx, key, time.Minute, func(context.Context) error { return nil }))
		st, err := ls.Status(ctx, key)
		require.NoError(t, err, name)
		assert.True(t, st.Held, name)
		assert.True(t, st.Done, name)
		assert.Equal(t, distlock.StateDone, st.State(), name)
		assert.Greater(t, st.TTL, 59*time.Second, name)
		assert.LessOrEqual(t, st.TTL, time.Minute, name)
	}
}

// TestRedlockStatus: free, held (with the quorum's TTL and the highest
// fence), unknown when too few nodes answer, and decided again when a
// quorum answers.
func TestRedlockStatus(t *testing.T) {
	ctx := context.Background()
	srvs := redistest.StartN(t, 3)
	rl := newRL(t, srvs)

	st, err := rl.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, distlock.LockStatus{Key: "k"}, st, "never used")
	assert.Equal(t, distlock.StateFree, st.State())

	l, err := rl.Obtain(ctx, "k", distlock.WithFencing(), distlock.WithTTL(20*time.Second))
	require.NoError(t, err)
	st, err = rl.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, distlock.StateHeld, st.State())
	assert.True(t, st.Held)
	assert.False(t, st.Done)
	assert.Greater(t, st.TTL, 19*time.Second)
	assert.LessOrEqual(t, st.TTL, 20*time.Second)
	assert.Equal(t, l.Fence(), st.Fence)

	// The hold lives as long as a quorum holds it: shorten it on one node
	// and the TTL is the other two's; shorten it on two and it is the
	// longer of those.
	require.NoError(t, srvs[0].Client(t).PExpire(ctx, "distlock:{k}", 5*time.Second).Err())
	st, err = rl.Status(ctx, "k")
	require.NoError(t, err)
	assert.Greater(t, st.TTL, 19*time.Second, "one short node decides nothing")
	require.NoError(t, srvs[1].Client(t).PExpire(ctx, "distlock:{k}", 8*time.Second).Err())
	st, err = rl.Status(ctx, "k")
	require.NoError(t, err)
	assert.Greater(t, st.TTL, 7*time.Second)
	assert.LessOrEqual(t, st.TTL, 8*time.Second, "a quorum is free once the second-longest hold ends")

	// One node down: a quorum still answers "held".
	srvs[2].Kill(t)
	st, err = rl.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, distlock.StateHeld, st.State())

	// One node held, one free, one down: nobody can tell.
	require.NoError(t, srvs[1].Client(t).Del(ctx, "distlock:{k}").Err())
	st, err = rl.Status(ctx, "k")
	var qe *distlock.QuorumError
	require.ErrorAs(t, err, &qe)
	assert.Len(t, qe.Errors, 1)
	assert.True(t, st.Unknown)
	assert.Equal(t, distlock.StateUnknown, st.State())
	assert.Equal(t, "unknown", st.State().String())
	assert.NotErrorIs(t, err, distlock.ErrNotObtained)
	assert.NotErrorIs(t, err, distlock.ErrNotHeld)

	// Two free of three answering is a quorum: free.
	require.NoError(t, srvs[0].Client(t).Del(ctx, "distlock:{k}").Err())
	st, err = rl.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, distlock.StateFree, st.State())

	_, err = rl.Status(ctx, "")
	assert.ErrorIs(t, err, distlock.ErrInvalidArgument)
	_, err = distlock.NewRedlock(nil).Status(ctx, "k")
	assert.ErrorIs(t, err, distlock.ErrInvalidArgument)
}

// TestStatusOtherType: a key of another type at the lock's name (put there
// by hand) is reported held, not as an error.
func TestStatusOtherType(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	require.NoError(t, srv.Client(t).RPush(ctx, "distlock:{list}", "x").Err())
	st, err := distlock.New(srv.Client(t)).Status(ctx, "list")
	require.NoError(t, err)
	assert.Equal(t, distlock.LockStatus{Key: "list", Held: true, TTL: -1}, st)
}
