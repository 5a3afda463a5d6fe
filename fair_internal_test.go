package distlock

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock/internal/redistest"
)

// TestFairLateTurnOfALeftEntryIsGivenBack: a turn handed to an entry just
// before it left the queue may reach its Locker after the entry stopped
// listening (the message was on its way). It is given back, not ignored:
// ignored, the lock would stay with nobody until its TTL.
//
//  1. W waits its turn for k, then its ctx ends: its entry leaves the
//     queue.
//  2. The message of a turn handed to it before that arrives through
//     Redis: the lock is set to the entry's token under its owner label,
//     as the release did, and the message published on its channel.
//
// Before the first fix the message found no entry for its channel and was
// dropped (the C16 bench found the lock stuck for its TTL this way);
// before the second, the Locker stopped listening on the channel when the
// entry left, its subscription closed, and the message was lost the same
// way.
func TestFairLateTurnOfALeftEntryIsGivenBack(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rk := lockKey(DefaultKeyPrefix, "k")
	require.NoError(t, admin.Set(ctx, rk, "holder", time.Minute).Err())

	w := New(srv.Client(t), WithFairness(true))
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := w.Obtain(wctx, "k", WithBlocking(), WithTTL(time.Minute))
		done <- err
	}()
	require.Eventually(t, func() bool { return admin.LLen(ctx, queueKey(rk)).Val() == 1 }, 5*time.Second, time.Millisecond)
	q := w.waiters.q
	q.w.mu.Lock()
	e := q.entries[rk]
	q.w.mu.Unlock()
	require.NotNil(t, e)
	wcancel()
	require.ErrorIs(t, <-done, ErrNotObtained)
	require.Eventually(t, func() bool {
		q.w.mu.Lock()
		defer q.w.mu.Unlock()
		return !e.buried.IsZero()
	}, 5*time.Second, time.Millisecond, "the entry left")

	nonce := "late"
	owner := DefaultOwner()
	require.NoError(t, admin.Set(ctx, rk, storedValue(grantToken(e.id, e.secret, nonce), owner), time.Minute).Err())
	n, err := admin.Publish(ctx, e.channel, fmt.Sprintf("%s 0 60000 %d %s", nonce, q.anchor(), owner)).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the Locker still listens on the channel of the entry that left")
	require.Eventually(t, func() bool { return admin.Exists(ctx, rk).Val() == 0 }, 5*time.Second, time.Millisecond,
		"the late turn was given back")
	assert.Zero(t, admin.LLen(ctx, queueKey(rk)).Val())
}
