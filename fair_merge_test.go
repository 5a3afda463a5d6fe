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

// How fair waiting meets owner labels, force release, shared leases and
// multi-key locks.

// TestFairHandOverKeepsTheHeirsOwner: a lock handed to a queued waiter of
// another Locker holds the heir's token under the heir's owner label: the
// heir's Lock stores exactly what Redis holds, and Status shows the heir
// as the owner.
func TestFairHandOverKeepsTheHeirsOwner(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair, distlock.WithOwner("releaser"))
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	heir := distlock.New(srv.Client(t), fair)
	got := obtainAsync(ctx, heir, "k", distlock.WithTTL(time.Minute), distlock.WithOwner("heir 1"))
	waitQueued(t, admin, "k", 1)

	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)
	assert.Equal(t, distlock.StoredValue(o.l), rlGet(t, srv, rlKey("k")))
	assert.Equal(t, "heir 1", o.l.Owner())
	st, err := heir.Status(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "heir 1", st.Owner)
	assert.NotContains(t, o.l.Token(), "\x00", "the token part holds no label")
	require.NoError(t, o.l.Release(ctx))
	assert.Empty(t, rlGet(t, srv, rlKey("k")))
}

// TestFairForceReleaseWakesTheQueuedWaiter: an operator force-releases a
// lock that a fair waiter of another Locker is queued for. The lock is
// freed, not handed over; the waiter, which hears turns on its own
// channel, is woken by the key's release channel and takes it at once,
// well before its fallback re-check (a minute here) or the holder's TTL.
// The old holder's Release answers ErrForceReleased.
func TestFairForceReleaseWakesTheQueuedWaiter(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	w := distlock.New(srv.Client(t), fair)
	got := obtainAsync(ctx, w, "k", distlock.WithTTL(time.Minute), distlock.WithRetry(distlock.LinearBackoff(time.Minute)))
	waitQueued(t, admin, "k", 1)
	// The waiter's subscription of the key's channel is confirmed.
	require.Eventually(t, func() bool {
		n, err := admin.PubSubNumSub(ctx, rlKey("k")+":wake").Result()
		require.NoError(t, err)
		return n[rlKey("k")+":wake"] > 0
	}, waitTimeout, time.Millisecond, "the waiter listens on the key's channel")

	require.NoError(t, distlock.New(srv.Client(t)).ForceRelease(ctx, "k"))
	o := waitObtained(t, got)
	assert.Equal(t, distlock.StoredValue(o.l), rlGet(t, srv, rlKey("k")))
	require.ErrorIs(t, l.Release(ctx), distlock.ErrForceReleased)
	require.NoError(t, o.l.Release(ctx))
}

// TestFairSharedAndMultiNeverQueue: with fairness on, blocked shared
// leases and blocked multi-key locks barge: they never write a queue
// entry. A blocked writer behind readers queues and records its claim, so
// no new reader gets in, and it gets the lock when the reader leaves.
func TestFairSharedAndMultiNeverQueue(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	lk := distlock.New(srv.Client(t), fair)

	// A multi-key lock waits for a held key without queueing.
	l, err := lk.Obtain(ctx, "a", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	other := distlock.New(srv.Client(t), fair)
	mctx, mcancel := context.WithCancel(ctx)
	mdone := make(chan error, 1)
	go func() {
		_, err := other.ObtainMulti(mctx, []string{"a", "b"}, distlock.WithBlocking(), distlock.WithTTL(time.Minute))
		mdone <- err
	}()
	// Its attempts keep finding "a" held; none queues.
	require.Eventually(t, func() bool {
		n, err := admin.PubSubNumSub(ctx, rlKey("a")+":wake").Result()
		require.NoError(t, err)
		return n[rlKey("a")+":wake"] > 0
	}, waitTimeout, time.Millisecond, "the multi-key caller waits")
	assert.Zero(t, queueLen(t, admin, "a"))
	mcancel()
	require.ErrorIs(t, <-mdone, distlock.ErrNotObtained)
	require.NoError(t, l.Release(ctx))

	// A reader holds "c"; a writer of another Locker waits for it.
	r, err := lk.Obtain(ctx, "c", distlock.WithShared(), distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	writer := distlock.New(srv.Client(t), fair)
	got := obtainAsync(ctx, writer, "c", distlock.WithTTL(time.Minute))
	waitQueued(t, admin, "c", 1)
	require.Eventually(t, func() bool {
		n, err := admin.Exists(ctx, rlKey("c")+":writers").Result()
		require.NoError(t, err)
		return n == 1
	}, waitTimeout, time.Millisecond, "the queued writer recorded its claim")
	_, err = distlock.New(srv.Client(t)).Obtain(ctx, "c", distlock.WithShared())
	require.ErrorIs(t, err, distlock.ErrNotObtained, "no new reader beside a waiting writer")
	// A blocked reader does not queue either.
	rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer rcancel()
	_, err = distlock.New(srv.Client(t), fair).Obtain(rctx, "c", distlock.WithShared(), distlock.WithBlocking())
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	assert.Equal(t, int64(1), queueLen(t, admin, "c"), "only the writer queued")

	released := time.Now()
	require.NoError(t, r.Release(ctx))
	o := waitObtained(t, got)
	assert.Less(t, o.at.Sub(released), time.Second, "woken by the reader's release")
	require.NoError(t, o.l.Release(ctx))
}

// TestFairHandOverObserved: a hand-over to a queued waiter of another
// Locker ends the releaser's hold with EventHandedOver (the lock was never
// free) and starts the heir's with EventObtained, so that a count of held locks (obtained
// minus released, lost and handed over) stays exact: one held lock
// throughout.
func TestFairHandOverObserved(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	g := newEventLog()
	holder := distlock.New(srv.Client(t), fair, distlock.WithObserver(g.observer("releaser")))
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	heir := distlock.New(srv.Client(t), fair, distlock.WithObserver(g.observer("heir")))
	got := obtainAsync(ctx, heir, "k", distlock.WithTTL(time.Minute))
	waitQueued(t, admin, "k", 1)
	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)

	g.waitFor(t, "releaser", distlock.EventHandedOver)
	events := g.waitFor(t, "heir", distlock.EventObtained)
	assert.Equal(t, names(distlock.EventObtained, distlock.EventHandedOver), kinds(g.of("releaser")))
	assert.Equal(t, distlock.EventObtained, events[len(events)-1].Kind)
	assert.Equal(t, o.l.Fence(), events[len(events)-1].Fence)
	contended := 0
	for _, e := range events[:len(events)-1] {
		if e.Kind == distlock.EventContended {
			contended++
		}
	}
	assert.Positive(t, contended, "the heir's attempts found the lock held")
	assert.Equal(t, contended, events[len(events)-1].Attempts, "a turn is not an attempt of the heir")
	held := 0
	for _, ne := range g.of("releaser") {
		held += heldDelta(ne.Kind)
	}
	for _, ne := range g.of("heir") {
		held += heldDelta(ne.Kind)
	}
	assert.Equal(t, 1, held, "one lock held: the heir's")
	require.NoError(t, o.l.Release(ctx))
}

// heldDelta is what an event changes in a count of held locks.
func heldDelta(k distlock.EventKind) int {
	switch k {
	case distlock.EventObtained:
		return 1
	case distlock.EventReleased, distlock.EventLost, distlock.EventHandedOver:
		return -1
	}
	return 0
}
