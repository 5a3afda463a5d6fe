package distlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// Lock.Context: the context ends with the lock, with the lock's end as its
// cause; one made after the end is cancelled at once; its cancel lets go of
// it without touching the lock.
func TestLockContextEndsWithTheLock(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t))
	bg := context.Background()

	t.Run("lost", func(t *testing.T) {
		l, err := lk.Obtain(bg, "ctx-lost", distlock.WithTTL(300*time.Millisecond), distlock.WithAutoRefresh())
		require.NoError(t, err)
		ctx, cancel := l.Context(bg)
		defer cancel()
		// A second context, let go of at once, must not be cancelled by
		// the loss any more than it already is, nor keep anything alive.
		other, otherCancel := l.Context(bg)
		otherCancel()
		require.ErrorIs(t, context.Cause(other), context.Canceled)

		assertOpen(t, ctx.Done(), "ctx while held")
		require.NoError(t, srv.Client(t).Del(bg, "distlock:{ctx-lost}").Err())
		waitClosed(t, ctx.Done(), waitTimeout, "ctx after the key was deleted")
		cause := context.Cause(ctx)
		assert.ErrorIs(t, cause, distlock.ErrNotHeld)
		assert.Equal(t, l.Err(), cause, "the cause is the lock's loss")
		assert.NotErrorIs(t, cause, distlock.ErrExpired, "deleted, not expired")
		assert.ErrorIs(t, context.Cause(other), context.Canceled, "a context let go of keeps its own cause")
		_ = l.Release(bg)
	})

	t.Run("released", func(t *testing.T) {
		l, err := lk.Obtain(bg, "ctx-released")
		require.NoError(t, err)
		ctx, cancel := l.Context(bg)
		defer cancel()
		assertOpen(t, ctx.Done(), "ctx while held")
		require.NoError(t, l.Release(bg))
		waitClosed(t, ctx.Done(), time.Second, "ctx after Release")
		assert.ErrorIs(t, context.Cause(ctx), distlock.ErrNotHeld)

		late, lateCancel := l.Context(bg)
		defer lateCancel()
		waitClosed(t, late.Done(), time.Second, "ctx of a released lock")
		assert.ErrorIs(t, context.Cause(late), distlock.ErrNotHeld)
	})

	t.Run("expired without auto-refresh", func(t *testing.T) {
		// No Done was ever asked for: Context alone must arm the expiry.
		l, err := lk.Obtain(bg, "ctx-expired", distlock.WithTTL(200*time.Millisecond))
		require.NoError(t, err)
		ctx, cancel := l.Context(bg)
		defer cancel()
		waitClosed(t, ctx.Done(), waitTimeout, "ctx at ValidUntil")
		assert.False(t, time.Now().Before(l.ValidUntil()), "ended before ValidUntil")
		assert.ErrorIs(t, context.Cause(ctx), distlock.ErrNotHeld)
		assert.ErrorIs(t, context.Cause(ctx), distlock.ErrExpired)
		assert.ErrorIs(t, l.Err(), distlock.ErrExpired)
	})

	t.Run("parent", func(t *testing.T) {
		l, err := lk.Obtain(bg, "ctx-parent")
		require.NoError(t, err)
		defer l.Release(bg)
		parent, stop := context.WithCancelCause(bg)
		ctx, cancel := l.Context(parent)
		defer cancel()
		want := errors.New("parent stopped")
		stop(want)
		waitClosed(t, ctx.Done(), time.Second, "ctx after its parent")
		assert.ErrorIs(t, context.Cause(ctx), want)
		assert.NoError(t, l.Err(), "the lock does not end with a context")
	})
}
