package distlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Shared locks: read-write locks and counting semaphores.
//
// A shared lease (a reader's, or a semaphore's permit) is an ordinary Lock
// whose backend is sharedBackend. For a lock key K under prefix P:
//
//	P{K}          holds sharedMarker while any lease is held, with the PTTL
//	              of the longest lease; a writer's SET NX fails on it
//	P{K}:shared   the leases: a sorted set, member = token, score = the
//	              lease's expiry in ms of the server's clock (TIME)
//	P{K}:writers  the writers waiting for the readers to leave: member = a
//	              waiting Obtain's id, score = when its claim expires
//
// All three share K's hash slot, so each script below is one atomic step
// on one node, also on a Cluster. Every script drops the leases (and
// claims) whose expiry has passed before it counts them, so a lease
// expires alone when its holder dies: its permit comes back after its TTL.
// A plain (exclusive) lock works as before: its SET NX or acquire.lua
// fails on the marker, and its release, refresh and TTL scripts compare
// the key with their token, which the marker never equals.
//
// Writers are not starved: a writer that waits (WithBlocking, or a retry
// strategy) and finds readers records a claim in P{K}:writers after each
// failed attempt (writer_wait.lua), and no new lease is granted while a
// live claim is there. The claim lasts the readers' longest lease plus
// the writer's TTL, and the writer's next attempt (which comes at the
// latest when that lease expires, as every wait is capped by the holder's
// PTTL) renews it; it is withdrawn when the writer obtains the lock or
// gives up, and expires by itself when the writer dies.

// sharedMarker is the value of a lock key held by shared leases: it starts
// with a NUL byte, as Once's done markers do, so no random token (a UUID)
// equals it, and WithToken refuses tokens that start with one.
const sharedMarker = "\x00shared"

// sharedKey is the Redis key of the lease set of the lock stored at rk.
func sharedKey(rk string) string { return rk + ":shared" }

// writersKey is the Redis key of the waiting writers of the lock at rk.
func writersKey(rk string) string { return rk + ":writers" }

// sharing is the resolved WithShared / WithLimit of one call.
type sharing struct {
	on    bool // a shared lease, not an exclusive lock
	limit int  // at most this many leases at once; 0: no limit
	given bool // WithLimit was given (limit must then be ≥ 1)
}

type sharedOption struct{}

func (sharedOption) apply(o *options) { o.share.on = true }
func (sharedOption) String() string   { return "WithShared()" }

// WithShared makes Obtain (and Do) take a shared lease of the key: a read
// lock. Any number of shared leases of a key are held at once; a plain
// Obtain of the same key is exclusive (a write lock): it fails (or waits)
// while any shared lease is held, and shared leases fail (or wait) while it
// is held. Default off: Obtain is exclusive.
//
// Each lease is its own Lock: its own token and TTL, refreshed (by hand or
// WithAutoRefresh) and released alone, with its own Done and Err, and with
// WithFencing its own fence, drawn from the key's one counter (so a
// writer's fence is greater than that of every lease granted before it).
// A lease whose holder dies expires alone after its TTL.
//
// Writers are not starved by a stream of readers: a writer that waits for
// the readers to leave (WithBlocking, or a WithRetry strategy) keeps new
// leases from being granted from its first failed attempt on, so it gets
// the lock as soon as the leases held at that moment have been released
// or have expired (plus one wake-up). Shared leases that wait behind it
// are woken when it gives up, or get in once it has released. A writer
// that dies while waiting holds new readers back until its claim expires:
// the readers' longest lease at its last attempt plus its own TTL. As with
// sync.RWMutex, a holder of a shared lease must not wait for another lease
// of the same key (no recursive read locking: a waiting writer would keep
// the second one out forever) nor for the write lock (no upgrade).
//
// WithShared is a per-call option of a Locker's Obtain and Do: given to
// New it makes every call fail with ErrInvalidArgument, and so does it
// given to a Redlock (see WithLimit), to Once, OncePerTick, ClaimTick or
// Lead (none of which may run twice at once), or together with WithToken
// (every lease draws a fresh token; none can be re-attached) or
// WithReplicas (the lease set is not acknowledged by replicas).
func WithShared() Option { return sharedOption{} }

type limitOption int

func (l limitOption) apply(o *options) {
	o.share = sharing{on: true, limit: int(l), given: true}
}
func (l limitOption) String() string { return fmt.Sprintf("WithLimit(%d)", int(l)) }

// WithLimit makes Obtain (and Do) take one of n permits of the key: a
// counting semaphore, that is a shared lease (WithShared) of which at most
// n are held at once. Each permit is its own Lock, with its own token,
// TTL, refresh, Done and Err, and fence (WithFencing); a permit whose
// holder dies comes back by itself when its TTL runs out. A caller that
// finds every permit taken gets ErrNotObtained, or with WithBlocking waits
// without polling: a permit's release wakes it, and so does the expiry of
// the first permit to expire. Do with WithLimit(n) runs at most n fn's at
// once across every process that uses the key.
//
// n must be at least 1 (otherwise ErrInvalidArgument) and should be the
// same in every caller of a key: an attempt is granted when fewer than its
// own n leases are held. A plain (exclusive) Obtain of the key waits for
// every permit and holds them all; a WithShared lease of the key ignores
// the limit.
//
// A Redlock rejects WithLimit and WithShared with ErrInvalidArgument: a
// quorum of per-node counts does not bound the holders (with 3 nodes and
// n = 2, three permits can each hold a different majority: {A,B}, {B,C},
// {A,C} each count 2 on every node they reach). Read-write locks would be
// sound on a Redlock (a readers' quorum and a writer's quorum intersect),
// but are not built yet. The other options are as for WithShared.
func WithLimit(n int) Option { return limitOption(n) }

// checkShared reports whether a shared call can honour o.
func (o options) checkShared() error {
	switch {
	case o.share.given && o.share.limit < 1:
		return invalidf("WithLimit(%d): the limit must be at least 1", o.share.limit)
	case o.token != "":
		return invalidf("WithToken does not apply to a shared lease: every lease draws a fresh token")
	case o.repl.n > 0:
		return invalidf("WithReplicas does not apply to a shared lease: its lease set is not acknowledged by replicas")
	}
	return nil
}

// rejectShared returns an error matching ErrInvalidArgument when opts, the
// options of a call that only takes exclusive locks, hold WithShared or
// WithLimit.
func rejectShared(call string, opts []Option) error {
	return rejectOptions(call, opts, func(opt Option) bool {
		switch opt.(type) {
		case sharedOption, limitOption:
			return true
		}
		return false
	})
}

// sharedBackend is the backend of a Locker's shared leases.
type sharedBackend struct{ lk *Locker }

var _ backend = (*sharedBackend)(nil)

// obtainShared is Obtain with WithShared or WithLimit.
func (lk *Locker) obtainShared(ctx context.Context, key string, o options) (*Lock, error) {
	if err := o.checkShared(); err != nil {
		return nil, fmt.Errorf("obtain %q: %w", key, err)
	}
	b := &sharedBackend{lk: lk}
	rk := lockKey(o.prefix, key)
	keys := []string{rk, sharedKey(rk), writersKey(rk), fenceKey(rk)}
	// A blocked caller queues in lk's room for the key, where a waiting
	// writer of lk may be behind it: that writer's claim must not keep it
	// out, or neither would ever go first.
	own := ""
	if o.blocking {
		own = lk.id
	}
	co := newObtainObs(o, key, false)
	try := func(ctx context.Context) (*Lock, time.Duration, error) {
		co.attempt()
		// A fresh token per attempt: the clean-up of a failed attempt,
		// however late it lands, only ever removes that attempt's lease.
		token := uuid.NewString()
		start := time.Now()
		run := lk.conns.get()
		res, err := sharedAcquireScript.Run(ctx, run, keys, sharedMarker, token, o.ttl.Milliseconds(), o.share.limit, o.fenceFlag(), own).Int64Slice()
		lk.conns.done()
		switch {
		case err != nil:
			b.abandon(ctx, err, rk, token)
			return nil, 0, err
		case len(res) != 2:
			return nil, 0, fmt.Errorf("distlock: unexpected shared acquire reply %v", res)
		case res[0] == 0:
			co.contended()
			return nil, msTTL(res[1]), nil
		}
		l := newLock(b, key, rk, token, res[1], o, start)
		if l == nil {
			b.abandon(ctx, nil, rk, token) // obtained too late to be of use
		}
		return l, 0, nil
	}
	// No hand-over (h nil): a release of a lease frees a permit for every
	// waiter, it is not a lock to pass on.
	return co.done(obtain(ctx, try, obtainCall{key: key, rk: rk, o: o, w: lk.waiters}))
}

// abandon gives back the lease of a failed attempt, as Locker.abandon
// does for a lock.
func (b *sharedBackend) abandon(ctx context.Context, cause error, rk, token string) {
	var rerr redis.Error
	if cause != nil && errors.As(cause, &rerr) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	run := b.lk.conns.get()
	defer b.lk.conns.done()
	_ = sharedReleaseScript.Run(ctx, run, []string{rk, sharedKey(rk)}, sharedMarker, token, b.lk.waiters.publish).Err()
}

func (b *sharedBackend) refresh(ctx context.Context, l *Lock, ttl time.Duration) error {
	run := b.lk.conns.get()
	defer b.lk.conns.done()
	n, err := sharedRefreshScript.Run(ctx, run, []string{l.rkey, sharedKey(l.rkey)}, sharedMarker, l.token, ttl.Milliseconds()).Int64()
	if err != nil {
		return err
	}
	if n == 0 {
		return errGone
	}
	return nil
}

func (b *sharedBackend) release(ctx context.Context, l *Lock) error {
	op := nodeOp{script: sharedReleaseScript, keys: []string{l.rkey, sharedKey(l.rkey)}, args: []any{sharedMarker, l.token, b.lk.waiters.publish}}
	run := b.lk.conns.get()
	// Never re-sent: a second run would find the lease gone.
	n, err := sendOnce(ctx, run, &op).Int64()
	b.lk.conns.done()
	if err != nil {
		err = unknownOutcome(err)
		if errors.Is(err, ErrUnknownOutcome) {
			l.releaseUnsure.Store(true)
		}
		return err
	}
	if n == releasedUnannounced {
		b.lk.waiters.lostWakeups.Add(1)
	}
	return l.releaseFound(n)
}

func (b *sharedBackend) pttl(ctx context.Context, l *Lock) (time.Duration, error) {
	run := b.lk.conns.get()
	defer b.lk.conns.done()
	ms, err := sharedPTTLScript.Run(ctx, run, []string{l.rkey, sharedKey(l.rkey)}, sharedMarker, l.token).Int64()
	if err != nil {
		return 0, err
	}
	if ms == pttlNotHeld {
		return 0, errGone
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// writerIntent is one exclusive Obtain's claim, while it waits, that stops
// new shared leases of the key (see writer_wait.lua). The claim is the
// Locker's (its blocked callers of one key queue, and only the first
// attempts), so that the Locker's blocked readers queued before the writer
// are not kept out by it. Its methods are called by the Obtain's attempts,
// one at a time.
type writerIntent struct {
	stored bool // a claim may be in Redis
}

// waiting records, after a failed attempt of an Obtain that will try
// again, that a writer waits, if readers hold the key. A blocked caller
// records it only once it is the first in lk's room for the key (the one
// that attempts): its attempt before it joins the room may leave it queued
// behind others, and a claim of a writer that does not attempt could keep
// out the readers it waits behind. It is best effort: on a Redis error the
// writer goes on waiting without the claim (its next attempt tells the
// error, if it lasts).
func (wi *writerIntent) waiting(ctx context.Context, lk *Locker, rk string, o options) {
	if _, once := o.retry.(noRetry); once && !o.blocking {
		return
	}
	if o.blocking && !lk.waiters.busy(rk, false) && !lk.waiters.busy(rk, true) {
		return // the attempt before joining the room
	}
	run := lk.conns.get()
	defer lk.conns.done()
	n, err := writerWaitScript.Run(ctx, run, []string{rk, writersKey(rk)}, sharedMarker, lk.id, o.ttl.Milliseconds()).Int64()
	if err != nil || n == 1 {
		wi.stored = true // an error may hide a write
	}
}

// done withdraws the claim, if one was recorded: the Obtain ended, with
// the lock or without (then the readers it held back are woken). It is
// best effort, bounded by abandonTimeout; a claim left behind expires by
// itself.
func (wi *writerIntent) done(ctx context.Context, lk *Locker, rk string, obtained bool) {
	if !wi.stored {
		return
	}
	wake := "1"
	if obtained {
		wake = "0"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	run := lk.conns.get()
	defer lk.conns.done()
	_ = writerDoneScript.Run(ctx, run, []string{rk, writersKey(rk)}, lk.id, wake, lk.waiters.publish).Err()
}
