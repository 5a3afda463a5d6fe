package distlock_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// Fair waiting at the edges: every script of a queue with its reply lost
// after Redis acted, and with its write held back on its connection.

// noRetries makes a client that never sends a command twice, with short
// timeouts, so that a held-back command times out.
func noRetries(o *redis.Options) {
	o.MaxRetries = -1
	o.ReadTimeout = 300 * time.Millisecond
	o.WriteTimeout = 300 * time.Millisecond
}

// TestFairHandOverWithLostReply: a release that hands the lock to a queued
// waiter loses its reply. The releaser is told the outcome is unknown; the
// waiter has the lock (nobody else can take it); a second Release finds
// the first one done.
func TestFairHandOverWithLostReply(t *testing.T) {
	release := scriptSrc(t, "release")
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	f := redistest.NewFaults(t)
	holder := distlock.New(srv.Client(t, f.Options, noRetries), fair)
	srv.Exec(t, "SCRIPT", "LOAD", release)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)
	got := obtainAsync(ctx, distlock.New(srv.Client(t), fair), "k", distlock.WithTTL(time.Minute), distlock.WithFencing(), noRecheck)
	waitQueued(t, admin, "k", 1)

	dropped := f.DropReply(redistest.And(redistest.Script(release), redistest.HasArg(rlKey("k"))))
	err = l.Release(ctx)
	waitClosed(t, dropped.Done(), waitTimeout, "the release ran")
	require.ErrorIs(t, err, distlock.ErrUnknownOutcome)
	assert.NotErrorIs(t, err, distlock.ErrNotHeld)
	o := waitObtained(t, got)
	assert.Equal(t, l.Fence()+1, o.l.Fence())
	assert.Equal(t, distlock.StoredValue(o.l), rlGet(t, srv, rlKey("k")))
	require.NoError(t, l.Release(ctx), "a second Release finds its hand-over done")
	_, err = distlock.New(srv.Client(t)).Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrNotObtained, "the heir holds the lock")
	require.NoError(t, o.l.Release(ctx))
}

// TestFairHandOverHeldBack: a release is held back on its connection (the
// releaser times out) while the waiter it would hand the lock to leaves
// (its ctx ends) and another one queues. When the release lands, the lock
// goes to the waiter that is there, never to the one that left.
func TestFairHandOverHeldBack(t *testing.T) {
	release := scriptSrc(t, "release")
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	f := redistest.NewFaults(t)
	holder := distlock.New(srv.Client(t, f.Options, noRetries), fair)
	srv.Exec(t, "SCRIPT", "LOAD", release)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	left := obtainAsync(lctx, distlock.New(srv.Client(t), fair), "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	waitQueued(t, admin, "k", 1)

	held := f.Hold(redistest.And(redistest.Script(release), redistest.HasArg(rlKey("k"))))
	err = l.Release(ctx)
	require.ErrorIs(t, err, distlock.ErrUnknownOutcome, "the release timed out")
	waitClosed(t, held.Caught(), waitTimeout, "the release is held")
	lcancel()
	o := <-left
	require.ErrorIs(t, o.err, distlock.ErrNotObtained)
	waitQueued(t, admin, "k", 0)
	got := obtainAsync(ctx, distlock.New(srv.Client(t), fair), "k", distlock.WithTTL(time.Minute), distlock.WithFencing(), noRecheck)
	waitQueued(t, admin, "k", 1)

	require.NoError(t, held.Release(5*time.Second), "the held release lands")
	o = waitObtained(t, got)
	assert.Equal(t, l.Fence()+1, o.l.Fence(), "no turn for the waiter that left")
	require.NoError(t, o.l.Release(ctx))
}

// TestFairQueuedAttemptWithLostReply: the attempt that queues a waiter
// loses its reply. Obtain returns the error (a Redis error, not
// ErrNotObtained), the entry the attempt wrote leaves the queue, and the
// holder's release frees the lock rather than handing it to nobody.
func TestFairQueuedAttemptWithLostReply(t *testing.T) {
	queued := scriptSrc(t, "acquire_queued")
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	f := redistest.NewFaults(t)
	srv.Exec(t, "SCRIPT", "LOAD", queued)
	dropped := f.DropReply(redistest.And(redistest.Script(queued), redistest.HasArg(rlKey("k"))))
	_, err = distlock.New(srv.Client(t, f.Options, noRetries), fair).Obtain(ctx, "k", distlock.WithBlocking(), distlock.WithTTL(time.Minute))
	waitClosed(t, dropped.Done(), waitTimeout, "the attempt ran")
	require.Error(t, err)
	assert.NotErrorIs(t, err, distlock.ErrNotObtained, "a lost reply reported as contention")
	waitQueued(t, admin, "k", 0)
	assert.Empty(t, entryKeys(t, admin, "k"))
	require.NoError(t, l.Release(ctx))
	assert.Empty(t, rlGet(t, srv, rlKey("k")), "freed, not handed to the waiter that left")
}

// TestFairTakingAttemptWithLostReply: the attempt that takes a free lock
// (its holder expired, the waiter was first in the queue) loses its
// reply. Obtain returns the error; the lock it may have taken is given
// back, and nothing is left: the lock is free and the queue empty.
func TestFairTakingAttemptWithLostReply(t *testing.T) {
	queued := scriptSrc(t, "acquire_queued")
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	_, err := distlock.New(srv.Client(t)).Obtain(ctx, "k", distlock.WithTTL(500*time.Millisecond))
	require.NoError(t, err) // never released: it expires
	f := redistest.NewFaults(t)
	srv.Exec(t, "SCRIPT", "LOAD", queued)
	w := distlock.New(srv.Client(t, f.Options, noRetries), fair)
	// No fallback re-check before the holder's expiry: the next attempt
	// is the one that finds the lock free.
	got := obtainAsync(ctx, w, "k", distlock.WithTTL(time.Minute), distlock.WithFencing(),
		distlock.WithRetry(distlock.LinearBackoff(time.Minute)))
	waitQueued(t, admin, "k", 1)
	dropped := f.DropReply(redistest.And(redistest.Script(queued), redistest.HasArg(rlKey("k"))))
	o := <-got // its attempt at the holder's expiry
	waitClosed(t, dropped.Done(), waitTimeout, "the attempt ran")
	require.Error(t, o.err)
	assert.NotErrorIs(t, o.err, distlock.ErrNotObtained)
	assert.Equal(t, "1", rlGet(t, srv, rlKey("k")+":fence"), "the attempt took the lock (and drew its fence)")
	require.Eventually(t, func() bool { return rlGet(t, srv, rlKey("k")) == "" && queueLen(t, admin, "k") == 0 },
		waitTimeout, time.Millisecond, "the lock given back and the entry gone")
	l, err := distlock.New(srv.Client(t)).Obtain(ctx, "k")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
}

// TestFairQueuedAttemptHeldBack: the attempt that queues a waiter is held
// back on its connection until the waiter has given up (its client timed
// out). When it lands, it queues an entry nobody listens to: the next
// release passes it over and hands the lock to the waiter behind it.
func TestFairQueuedAttemptHeldBack(t *testing.T) {
	queued := scriptSrc(t, "acquire_queued")
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)
	f := redistest.NewFaults(t)
	srv.Exec(t, "SCRIPT", "LOAD", queued)
	held := f.Hold(redistest.And(redistest.Script(queued), redistest.HasArg(rlKey("k"))))
	gone := distlock.New(srv.Client(t, f.Options, noRetries), fair)
	_, err = gone.Obtain(ctx, "k", distlock.WithBlocking(), distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.Error(t, err, "the held attempt timed out")
	waitClosed(t, held.Caught(), waitTimeout, "the attempt is held")
	// The waiter's entry leaves (its subscription with it) before the
	// attempt lands.
	require.Eventually(t, func() bool {
		ch, err := admin.PubSubChannels(ctx, "distlock:{k}:wake:*").Result()
		require.NoError(t, err)
		return len(ch) == 0
	}, waitTimeout, time.Millisecond, "the waiter stopped listening")
	require.NoError(t, held.Release(5*time.Second), "the held attempt lands")
	waitQueued(t, admin, "k", 1) // the dead entry

	got := obtainAsync(ctx, distlock.New(srv.Client(t), fair), "k", distlock.WithTTL(time.Minute), distlock.WithFencing(), noRecheck)
	waitQueued(t, admin, "k", 2)
	released := time.Now()
	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)
	assert.Less(t, o.at.Sub(released), time.Second)
	assert.Equal(t, l.Fence()+1, o.l.Fence(), "no turn for the dead entry")
	require.NoError(t, o.l.Release(ctx))
}

// TestFairUnheardTurnIsAdopted: a turn handed to a waiter whose message
// went unheard (here: the lock set to the entry's token prefix by hand, as
// a release would, and no message sent) is taken by the waiter's next
// attempt, which its subscription's reconnection triggers.
func TestFairUnheardTurnIsAdopted(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	holder := distlock.New(srv.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute), distlock.WithFencing())
	require.NoError(t, err)
	got := obtainAsync(ctx, distlock.New(srv.Client(t), fair), "k", distlock.WithTTL(time.Minute), distlock.WithFencing(), noRecheck)
	waitQueued(t, admin, "k", 1)
	id, err := admin.LIndex(ctx, "distlock:{k}:q", 0).Result()
	require.NoError(t, err)
	token := id + ".unheard"
	require.NoError(t, admin.Set(ctx, rlKey("k"), token, 10*time.Second).Err())
	fence, err := admin.Incr(ctx, rlKey("k")+":fence").Result() // as the release draws it
	require.NoError(t, err)
	_, err = admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	require.NoError(t, err)

	o := waitObtained(t, got)
	assert.Equal(t, token, o.l.Token())
	assert.Greater(t, o.l.Fence(), fence)
	ttl, err := admin.PTTL(ctx, rlKey("k")).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 50*time.Second, "re-armed to the adopter's TTL")
	require.NoError(t, o.l.Release(ctx))
	require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)
	assert.False(t, strings.HasPrefix(rlGet(t, srv, rlKey("k")), id))
}
