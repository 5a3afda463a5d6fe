package distlock

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fair waiting (WithFairness). Blocked callers queue in Redis next to the
// lock, and a release hands the lock to the first live waiter of the queue
// in the release script itself, so that the lock is never free in between
// and only that waiter is woken.
//
// Layout, for the lock key L = P{K} (every key in K's hash slot):
//
//	L:q        a list of entry ids in arrival order (its head is next)
//	L:q:<id>   entry id: "<secret> <ttl ms> <fence flag> <anchor> <owner> <counted>",
//	           expiring entryTTL after its waiter last refreshed it
//	L:wake:<id>  the channel on which entry id is told that it got the lock
//
// An entry is one Locker's place in the queue for one key: the Locker's
// callers blocked on the key wait behind each other in its room (see
// waiters), and whoever is first there when the lock comes takes it. An
// entry keeps its place after a turn: the release that hands the lock over
// moves it to the tail (LMOVE), ready for the Locker's next caller, so
// that a process that keeps asking costs Redis no queue write per turn.
// An entry nobody in its process waits for lingers entryLinger, then
// leaves the queue.
//
// release.lua (the release of every Lock of a Locker) takes the head,
// moves it to the tail, and, when its entry key still exists and (where
// subscribers are counted) someone listens on its channel, draws its fence
// when asked, sets the lock to its token (and its owner label) and tells
// it on its channel:
// "<nonce> <fence> <ttl ms> <anchor> <owner>". Otherwise it drops that
// entry and tries the next. With no live entry it deletes the lock and
// wakes the barging waiters, as before. One script, so the lock changes
// hands atomically; the nonce is the SHA-1 of the releaser's stored value,
// fresh for each release, and the heir's token is "<id>.<sha1(secret, nonce)>": new for each turn,
// computable only by whoever can read the entry, and recognisable as the
// entry's by its prefix.
//
// acquire_queued.lua is a queued caller's attempt: it takes the lock when
// it is free and no live entry is ahead (waking the first live one
// otherwise), and makes sure the caller's entry is in the queue, at the
// tail when it was not. It also adopts a lock handed to the entry whose
// message went unheard (a subscription that was reconnecting).
//
// Validity of a handed-over lock. The heir hears of its turn some time
// after the lock was set; it counts the lock's validity from its anchor:
// the moment (on its own monotonic clock) it sent the write of the entry
// data that the release read, which Redis ran before the release did. The
// Locker rewrites its entries every entryRefresh (at most TTL/8), so a
// handed-over lock starts with a validity at most that much (plus a round
// trip) shorter than one obtained by an attempt.
//
// Dead waiters. An entry whose waiter stopped refreshing it expires
// entryTTL (2s) after the last refresh; where subscribers are counted
// (every deployment but a Redis Cluster, where a subscription may sit on
// another node), an entry nobody listens to is skipped at once, so the
// entry of a waiter whose process died is skipped as soon as Redis has
// seen its connection close. A waiter whose ctx ends leaves the queue with
// its last caller (one round trip); one that was handed the lock as it
// left gives the lock back. A Locker whose entry expired (say, its process
// was paused) queues again, at the tail. What no queue can prevent: a
// lock handed to a waiter in the moment between its death and its entry's
// end (at most entryTTL for a waiter cut off from Redis or paused) stays
// with it until its TTL, like any lock whose holder vanished.
//
// Turns on their way. An entry that leaves the queue stays listened to
// for entryTTL, so that a turn handed to it just before it left is heard
// and given back (a closed subscription would lose it, and the lock would
// stay with nobody until its TTL). A turn whose message was lost because
// the subscription broke is taken by the room's head at its next attempt
// (it adopts the lock: acquire_queued.lua tells it the lock carries the
// entry's id), and, for an entry nobody waits on, looked for by the
// manager once the subscription is back, and given back.

// entryTTL is how long a queue entry (and the queue) outlives its
// waiter's last refresh.
const entryTTL = 2 * time.Second

// queueTTL is how long a queue outlives the last refresh of its expiry,
// which every Locker with a live entry in it makes at least every
// entryTTL: longer than any entry's, so that a live entry is always in
// its queue.
const queueTTL = 4 * entryTTL

// entryLinger is how long an entry stays queued after its Locker's last
// blocked caller obtained the lock, for its next one.
const entryLinger = time.Second

// entryRefresh returns how often an entry for a lock of the given TTL is
// rewritten: entryTTL/4, and at most TTL/8 (the anchor of a hand-over is
// at most that old), at least every minEntryRefresh.
func entryRefresh(ttl time.Duration) time.Duration {
	return max(min(entryTTL/4, ttl/8), minEntryRefresh)
}

const minEntryRefresh = 5 * time.Millisecond

// queueIOTimeout bounds each batch of queue I/O the manager sends.
const queueIOTimeout = 2 * time.Second

// queue is a Locker's part in the queues of the keys its callers wait for.
type queue struct {
	lk      *Locker
	w       *waiters // its mu guards everything below
	base    time.Time
	counted string // "1": liveness by counted subscribers; "0" on a Cluster
	// off is set once Redis refused a queued attempt for want of
	// permission (an ACL without the list commands): the Locker's callers
	// barge from then on.
	off atomic.Bool

	entries   map[string]*entry // by lock key
	byChannel map[string]*entry // by channel, until entryTTL after unwatched
	gives     []giveBack        // locks to give back
	sweeps    []*entry          // idle or departed entries to look for an unheard turn
	running   bool
	kick      chan struct{}
	lastDone  chan struct{}
}

// entry is one Locker's place in one key's queue.
type entry struct {
	rk, id, secret string
	key, channel   string
	ready          <-chan struct{} // the channel's subscription is confirmed
	lockReady      <-chan struct{} // the lock's channel's is

	rm         *room     // the room it serves; nil while it lingers
	lingerTill time.Time // when a lingering entry leaves
	drop       bool      // to leave the queue at the manager's next turn
	nudged     bool      // dropped idle on a wake-up: leaving wakes the waiters
	gone       bool      // left (or leaving) the queue: a new one is made

	queued bool // written by an attempt and not known to be lost since
	ttlMs  int64
	fenced bool
	owner  string    // the owner label its turns are stored under (owner.go)
	next   time.Time // next refresh

	// lastTaken is the token of the last turn handed to a caller of this
	// Locker (heard or adopted): the lock may hold it for as long as that
	// caller keeps it, and no other caller may get it. Turns are taken one
	// after the other (the lock is exclusive), so it only moves forward.
	lastTaken string
	// seen holds the tokens of turns heard, adopted, given back or
	// claimed by a sweep, with when, for seenKeep: a message or a reply
	// that comes late with one of them is not a new turn. One remembered
	// token would not do: a late one would overwrite a newer one, and the
	// newer one would then look new (two callers holding one turn).
	seen      map[string]time.Time
	seenCap   int       // prune seen when it grows past this
	refreshes int       // refreshes sent: every 4th also renews the queue's expiry
	buried    time.Time // when it stopped listening (gone entries only)
	// handed is when a release of this Locker last handed the lock to
	// another waiter, while this entry was queued: the lock is held, and
	// the Locker's next blocked caller need not try before it waits.
	handed time.Time
}

// grant is a turn handed to an entry, as heard on its channel.
type grant struct {
	rk, token string
	fence     int64
	ttlMs     int64
	start     time.Time
	e         *entry
}

// giveBack is a lock to release for an entry that does not want it.
type giveBack struct {
	rk, token, pass string
	tries           int       // sends that failed (no answer)
	at              time.Time // not before (a retry)
}

// giveBackTries is how many times a give-back is sent when no answer
// comes: resending is safe (release.lua acts only on the value), and a
// turn that nobody takes would otherwise stay with nobody until its TTL.
const giveBackTries = 8

func newQueue(lk *Locker, w *waiters, client redis.UniversalClient) *queue {
	counted := "1"
	if _, ok := client.(*redis.ClusterClient); ok {
		counted = "0"
	}
	return &queue{lk: lk, w: w, base: time.Now(), counted: counted,
		entries: make(map[string]*entry), byChannel: make(map[string]*entry)}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// grantToken is the token of a turn handed to entry id with secret.
func grantToken(id, secret, nonce string) string {
	sum := sha1.Sum([]byte(secret + nonce))
	return id + "." + hex.EncodeToString(sum[:])
}

// anchor is now on the queue's clock, in µs.
func (q *queue) anchor() int64 { return time.Since(q.base).Microseconds() }

func (e *entry) data(anchor int64, counted string) string {
	fence := "0"
	if e.fenced {
		fence = "1"
	}
	return e.secret + " " + strconv.FormatInt(e.ttlMs, 10) + " " + fence + " " + strconv.FormatInt(anchor, 10) + " " + e.owner + " " + counted
}

// seenKeep is how long a token stays in an entry's seen set: longer than
// a message or a reply can come late (a subscription's health check
// fails a connection silent for 2s; commands time out sooner), and than a
// turn's validity in the default TTL.
const seenKeep = 30 * time.Second

// known reports whether v is the token of a turn taken by a caller of this
// Locker or seen before (see seen). Call with the waiters' mu held.
func (e *entry) known(v string) bool {
	if v == e.lastTaken {
		return true
	}
	_, ok := e.seen[v]
	return ok
}

// see records v as seen, dropping tokens seen more than seenKeep ago
// whenever the set has doubled. Call with the waiters' mu held.
func (e *entry) see(v string) {
	now := time.Now()
	if e.seen == nil {
		e.seen = make(map[string]time.Time)
	}
	e.seen[v] = now
	if len(e.seen) > max(e.seenCap, 64) {
		for t, at := range e.seen {
			if now.Sub(at) > seenKeep {
				delete(e.seen, t)
			}
		}
		e.seenCap = 2 * len(e.seen)
	}
}

// fits reports whether the entry is written for a lock like o's.
func (e *entry) fits(o options) bool {
	return e.ttlMs == o.ttl.Milliseconds() && e.fenced == o.fencing && e.owner == o.owner
}

// enter attaches rm, a new room for rk, to the Locker's entry for rk
// (making one when there is none), and waits until its channel's
// subscription is confirmed, at most limit or until ctx ends, so that a
// turn handed to it is heard. It returns the room head's first turn: an
// attempt, unless the entry is queued already for o's lock (then it waits
// for its turn, or at most for the fallback delay).
func (q *queue) enter(ctx context.Context, rk string, rm *room, o options, limit time.Duration) turn {
	w := q.w
	w.mu.Lock()
	e := q.entries[rk]
	fresh := e == nil
	if fresh {
		e = &entry{rk: rk, id: randomHex(8), secret: randomHex(16)}
		e.key = entryKey(rk, e.id)
		e.channel = entryChannel(rk, e.id)
		q.entries[rk] = e
		q.byChannel[e.channel] = e
	}
	e.rm, rm.entry = rm, e
	e.lingerTill = time.Time{}
	e.drop, e.nudged = false, false
	queued := e.queued && e.fits(o)
	q.startLocked()
	w.mu.Unlock()
	if fresh {
		// Its channel, and the lock's: a release that hands nothing over
		// (a caller that barges, the last shared lease leaving, a force
		// release) wakes the head to try in its turn. Both stay watched
		// until entryTTL after the entry left (forget).
		ready := w.notifiers[0].watch(e.channel)
		lockReady := w.notifiers[0].watch(wakeChannel(rk))
		w.mu.Lock()
		e.ready, e.lockReady = ready, lockReady
		w.mu.Unlock()
	}
	w.mu.Lock()
	ready, lockReady := e.ready, e.lockReady
	w.mu.Unlock()
	// Both confirmed before the first attempt: a confirmation wakes the
	// room (see read in notify.go), which after the attempt would make its
	// head try again for nothing.
	t := time.NewTimer(limit)
	defer t.Stop()
wait:
	for _, r := range [...]<-chan struct{}{ready, lockReady} {
		select {
		case <-r:
		case <-t.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	if queued {
		return turn{wake: rm.next(), holderTTL: -1}
	}
	return turn{attempt: true, holderTTL: -1}
}

// handedOver records that a release of this Locker handed the lock on rk
// to another waiter.
func (q *queue) handedOver(rk string) {
	q.w.mu.Lock()
	defer q.w.mu.Unlock()
	if e := q.entries[rk]; e != nil && e.queued {
		e.handed = time.Now()
	}
}

// waitFirst reports whether a blocked caller of this Locker under o may
// wait for its turn without trying first: the Locker's entry is queued for
// a lock like o's, and a release of this Locker handed the lock to another
// waiter since the entry's last turn (within entryTTL), so the lock is
// held and will come round. Should the lock be freed otherwise (its
// holder's TTL ran out), the caller notices at its fallback re-check, as
// every queued waiter does.
func (q *queue) waitFirst(rk string, o options) bool {
	q.w.mu.Lock()
	defer q.w.mu.Unlock()
	e := q.entries[rk]
	return e != nil && e.queued && e.fits(o) && !e.handed.IsZero() && time.Since(e.handed) < entryTTL
}

// matches reports whether rk's entry is queued for a lock like o's: a head
// for which it is not attempts (and so rewrites it) instead of waiting.
func (q *queue) matches(rk string, o options) bool {
	q.w.mu.Lock()
	defer q.w.mu.Unlock()
	e := q.entries[rk]
	return e != nil && e.queued && e.fits(o)
}

// passOver returns the id of the entry for rk when nobody of this Locker
// waits on it (it lingers): a release of this Locker skips it rather than
// hand the lock to a waiter that is not there. Otherwise "".
func (q *queue) passOver(rk string) string {
	if q == nil {
		return ""
	}
	q.w.mu.Lock()
	defer q.w.mu.Unlock()
	if e := q.entries[rk]; e != nil && e.rm == nil {
		return e.id
	}
	return ""
}

// closedLocked detaches rm, which has emptied, from its entry: the entry
// lingers when its last caller obtained the lock, and leaves at once when
// that caller gave up. A turn that came while nobody was parked is given
// back.
func (q *queue) closedLocked(rm *room, obtained bool) {
	e := rm.entry
	rm.entry = nil
	if e == nil {
		return
	}
	e.rm = nil
	if g := rm.pending; g != nil {
		rm.pending = nil
		q.giveBackLocked(g.rk, g.token, e.id)
		obtained = false
	}
	if obtained {
		e.lingerTill = time.Now().Add(entryLinger)
	} else {
		// Its last caller gave up (ctx, an error): the entry leaves, and
		// the manager looks whether a turn went to it unheard (an attempt
		// whose reply was lost may have been told so), since nobody of
		// this Locker will ask again.
		e.drop = true
		q.sweepLocked(e)
	}
	q.startLocked()
	q.kickLocked()
}

// attempt runs acquire_queued.lua for a caller of rm's entry under o, with
// a fresh token. It returns the Lock when obtained (or when a turn handed
// to the entry went unheard and is adopted), else the holder's TTL.
func (q *queue) attempt(ctx context.Context, key, rk string, o options) (*Lock, time.Duration, error) {
	w := q.w
	lk := q.lk
	w.mu.Lock()
	e := q.entries[rk]
	if e == nil || e.gone {
		w.mu.Unlock()
		// The room's entry left (its process lost it): the plain attempt.
		return nil, -1, nil
	}
	e.ttlMs, e.fenced, e.owner = o.ttl.Milliseconds(), o.fencing, o.owner
	e.next = time.Now().Add(entryRefresh(o.ttl))
	e.handed = time.Time{}
	data := e.data(q.anchor(), q.counted)
	id, ek := e.id, e.key
	w.mu.Unlock()

	token := attemptToken(o)
	start := time.Now()
	keys := []string{rk, fenceKey(rk), queueKey(rk), ek}
	args := []any{token, o.ttl.Milliseconds(), o.fenceFlag(), id, data, entryTTL.Milliseconds(), queueTTL.Milliseconds(), w.publishArg, sharedMarker}
	run := lk.conns.get()
	res, err := acquireQueuedScript.Run(ctx, run, keys, args...).Slice()
	lk.conns.done()
	if err != nil {
		if isNoPerm(err) {
			q.off.Store(true)
			return nil, -1, errNoQueue
		}
		lk.abandonPassing(ctx, err, rk, token, id)
		return nil, 0, err
	}
	code, fence, ok := queuedReply(res)
	if !ok {
		return nil, 0, fmt.Errorf("distlock: unexpected queued acquire reply %v", res)
	}
	switch code {
	case 1:
		l := newLock(lk, key, rk, token, fence, o, start)
		if l == nil {
			lk.abandon(ctx, nil, rk, token)
			return nil, 0, nil
		}
		return l, 0, nil
	case 2:
		// A turn handed to the entry whose message went unheard: adopt
		// it, unless it was heard meanwhile (then it is a waiter's).
		held := res[2].(string)
		w.mu.Lock()
		dup := e.known(held)
		if !dup {
			e.see(held)
		}
		w.mu.Unlock()
		if dup {
			return nil, -1, nil
		}
		l, ttl, err := q.adopt(ctx, key, rk, held, o)
		if l != nil {
			w.mu.Lock()
			e.lastTaken = held
			w.mu.Unlock()
		}
		return l, ttl, err
	}
	w.mu.Lock()
	if !e.gone {
		e.queued = true
		q.startLocked()
		q.kickLocked() // its refreshes are due from now on
	}
	w.mu.Unlock()
	if code == 3 {
		return nil, msTTL(fence), errReadersHold
	}
	return nil, msTTL(fence), nil
}

// adopt takes the lock rk that a turn handed to this Locker's entry with
// token, whose message went unheard: it re-attaches to the token with
// acquire.lua, which re-arms the lock to o's TTL (the validity counts from
// this attempt) and draws its fence. The lock is this Locker's, and no
// caller of it holds it: nobody else can have it meanwhile.
func (q *queue) adopt(ctx context.Context, key, rk, token string, o options) (*Lock, time.Duration, error) {
	lk := q.lk
	start := time.Now()
	keys, args := acquireCall(rk, token, o)
	run := lk.conns.get()
	res, err := acquireScript.Run(ctx, run, keys, args...).Int64Slice()
	lk.conns.done()
	switch {
	case err != nil:
		q.giveBack(rk, token, "") // ours either way: nobody will use it
		return nil, 0, err
	case len(res) != 2:
		return nil, 0, fmt.Errorf("distlock: unexpected acquire reply %v", res)
	case res[0] != 1:
		return nil, msTTL(res[1]), nil
	}
	l := newLock(lk, key, rk, token, res[1], o, start)
	if l == nil {
		q.giveBack(rk, token, "")
		return nil, 0, nil
	}
	return l, 0, nil
}

// isNoPerm reports whether err is Redis refusing a command for want of
// permission: NOPERM, or a script's call of a command the user may not run
// (nothing was written before it in acquire_queued.lua's paths).
func isNoPerm(err error) bool {
	return err != nil && (redis.HasErrorPrefix(err, "NOPERM") || strings.Contains(err.Error(), "can't run this command"))
}

// disabled reports whether the Locker's callers barge for want of the
// permission to queue.
func (q *queue) disabled() bool { return q.off.Load() }

// queuedReply parses acquire_queued.lua's reply: {1, fence}, {0, pttl},
// {3, pttl} (queued behind shared leases) or {2, fence, token, pttl}.
func queuedReply(res []any) (code, n int64, ok bool) {
	if len(res) < 2 {
		return 0, 0, false
	}
	code, ok1 := res[0].(int64)
	n, ok2 := res[1].(int64)
	if !ok1 || !ok2 || code < 0 || code > 3 || (code == 2) != (len(res) == 4) {
		return 0, 0, false
	}
	if code == 2 {
		_, ok1 := res[2].(string)
		_, ok2 := res[3].(int64)
		if !ok1 || !ok2 {
			return 0, 0, false
		}
	}
	return code, n, true
}

// onMessage handles a message on an entry's channel: a turn (the lock is
// now the entry's), or an empty nudge (the lock is free and the entry
// first: its room's head attempts at once). It reports whether channel
// is an entry's.
func (q *queue) onMessage(channel, payload string) bool {
	w := q.w
	w.mu.Lock()
	e := q.byChannel[channel]
	if e == nil {
		w.mu.Unlock()
		return false
	}
	rm := e.rm
	if payload == "" {
		// A wake-up, or the subscription (re)confirmed. Nobody of this
		// Locker waits on an idle or departed entry to re-check: the
		// manager looks whether a turn went to it unheard while the
		// subscription was away (and an idle entry, in somebody's way,
		// leaves).
		if rm == nil && e.queued {
			q.sweepLocked(e)
			if !e.gone {
				e.drop, e.nudged = true, true
			}
		}
		w.mu.Unlock()
		if rm != nil {
			rm.wake()
		}
		return true
	}
	g, ok := q.parseGrant(e, payload)
	if !ok || e.known(g.token) {
		w.mu.Unlock() // garbled, or adopted already by an attempt
		return true
	}
	e.see(g.token)
	e.handed = time.Time{}
	if rm == nil || e.gone {
		// Nobody waits here any more: give the turn back and leave.
		if !e.gone {
			e.drop = true
		}
		q.giveBackLocked(g.rk, g.token, e.id)
		w.mu.Unlock()
		return true
	}
	if time.Since(g.start) < time.Duration(g.ttlMs)*time.Millisecond {
		// A caller of the room takes it (or gives it back); a turn whose
		// validity ran out on its way (a message later than the TTL) is
		// not taken by anybody, and must not replace the last one taken.
		e.lastTaken = g.token
	}
	tk := rm.parked
	if tk != nil {
		rm.parked = nil
		tk.claim.Store(claimPending)
	} else {
		if old := rm.pending; old != nil {
			// A turn of before that nobody took: it has ended.
			q.giveBackLocked(old.rk, old.token, e.id)
		}
		rm.pending = g
	}
	w.mu.Unlock()
	if tk != nil {
		q.deliver(tk, g)
	}
	return true
}

// parseGrant reads a turn's message "<nonce> <fence> <ttl ms> <anchor>
// <owner label>" (the label may be empty or hold spaces). The lock then
// holds the turn's token under that label: the Lock's stored value.
func (q *queue) parseGrant(e *entry, payload string) (*grant, bool) {
	f := strings.SplitN(payload, " ", 5)
	if len(f) != 5 {
		return nil, false
	}
	fence, err1 := strconv.ParseInt(f[1], 10, 64)
	ttl, err2 := strconv.ParseInt(f[2], 10, 64)
	anchor, err3 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || ttl <= 0 {
		return nil, false
	}
	return &grant{
		rk: e.rk, token: storedValue(grantToken(e.id, e.secret, f[0]), f[4]), fence: fence, ttlMs: ttl,
		start: q.base.Add(time.Duration(anchor) * time.Microsecond), e: e,
	}, true
}

// takePendingLocked hands a turn that came while nobody was parked to tk,
// which just parked in rm: it claims tk and returns the turn, to deliver.
func (q *queue) takePendingLocked(rm *room, tk *ticket) *grant {
	g := rm.pending
	if g == nil {
		return nil
	}
	rm.pending = nil
	rm.parked = nil
	tk.claim.Store(claimPending)
	return g
}

// deliver answers tk, which was claimed for g: with the Lock, or with nil
// when the turn does not fit its caller (another TTL or fencing, because
// the entry was rewritten for an earlier head; the caller then attempts,
// which rewrites it) or its validity is already spent; the turn is then
// given back. When the caller left meanwhile, the turn is given back.
func (q *queue) deliver(tk *ticket, g *grant) {
	if !tk.deliver() {
		q.giveBack(g.rk, g.token, g.e.id)
		return
	}
	h := tk.heir
	o := h.o
	var l *Lock
	tok, owner := splitValue(g.token) // the turn is stored under the heir's label
	if g.ttlMs == o.ttl.Milliseconds() && (g.fence > 0) == o.fencing && tok != g.token && owner == o.owner {
		l = newLock(q.lk, h.key, g.rk, g.token, g.fence, o, g.start)
	}
	if l == nil {
		q.w.mu.Lock()
		g.e.queued = false // the head attempts, and so rewrites the entry
		q.w.mu.Unlock()
		q.giveBack(g.rk, g.token, g.e.id)
	}
	tk.grant <- l
}

// giveBack queues the release of a turn nobody takes; the manager sends
// it, passing over entry pass.
func (q *queue) giveBack(rk, token, pass string) {
	q.w.mu.Lock()
	defer q.w.mu.Unlock()
	q.giveBackLocked(rk, token, pass)
}

// giveBackLocked is giveBack with the waiters' mu held.
func (q *queue) giveBackLocked(rk, token, pass string) {
	q.gives = append(q.gives, giveBack{rk: rk, token: token, pass: pass})
	q.startLocked()
	q.kickLocked()
}

// sweepLocked asks the manager to look whether a turn went to e unheard
// (see sweep). Call with the waiters' mu held.
func (q *queue) sweepLocked(e *entry) {
	q.sweeps = append(q.sweeps, e)
	q.startLocked()
	q.kickLocked()
}

// missed is told that messages may have been missed (a subscription
// reconnected). A room's head re-checks by itself (and adopts a turn that
// went unheard); an idle entry has nobody to, so the manager looks whether
// the lock was handed to it, and gives it back if so.
func (q *queue) missed() {
	q.w.mu.Lock()
	defer q.w.mu.Unlock()
	for _, e := range q.entries {
		if e.rm == nil && e.queued {
			q.sweepLocked(e)
		}
	}
}

// sweep gives back the locks handed to idle entries whose turn went
// unheard: held with a value that starts with the entry's id and that no
// caller of this Locker took. An entry lingers while the caller that got
// its last turn holds the lock, so that value is the last one heard or
// adopted (lastTaken), and is left alone, as is any value seen before. A
// value given back is marked seen first, under the same lock as onMessage
// and attempt, so that a message or an adoption of it that comes after
// the read is not handed to a caller as well.
func (q *queue) sweep(idle []*entry) {
	ctx, cancel := context.WithTimeout(context.Background(), queueIOTimeout)
	defer cancel()
	pipe := q.lk.conns.client.Pipeline()
	gets := make([]*redis.StringCmd, len(idle))
	for i, e := range idle {
		gets[i] = pipe.Get(ctx, e.rk)
	}
	_, _ = pipe.Exec(ctx)
	for i, e := range idle {
		v, err := gets[i].Result()
		if err != nil || !strings.HasPrefix(v, e.id+".") {
			continue
		}
		q.w.mu.Lock()
		// A room's head adopts such a turn itself (a room may have come
		// since the sweep was asked for): giving it back would pass the
		// turn to the waiter behind this entry.
		taken := e.known(v) || e.rm != nil
		if !taken {
			e.see(v)
		}
		q.w.mu.Unlock()
		if !taken {
			q.sendGiveBack(giveBack{rk: e.rk, token: v, pass: e.id})
		}
	}
}

// startLocked starts the manager unless it runs.
func (q *queue) startLocked() {
	if q.running {
		return
	}
	q.running = true
	q.kick = make(chan struct{}, 1)
	prev, done := q.lastDone, make(chan struct{})
	q.lastDone = done
	// Owner: the queue. The manager returns by itself once there is no
	// entry and no work left; the next one waits for it.
	go q.manage(q.kick, prev, done)
}

func (q *queue) kickLocked() {
	if q.running {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// refreshItem is one entry's refresh in a manager's batch.
type refreshItem struct {
	e     *entry
	data  string
	renew bool // the queue's expiry too
}

// manage keeps the entries: it sends the give-backs, takes the entries
// that leave out of the queue, and rewrites the others every entryRefresh.
// It returns once no entry and no work is left.
func (q *queue) manage(kick <-chan struct{}, prev <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if prev != nil {
		<-prev
	}
	w := q.w
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		w.mu.Lock()
		now := time.Now()
		var gives []giveBack
		later := q.gives[:0]
		for _, g := range q.gives {
			if now.Before(g.at) {
				later = append(later, g)
			} else {
				gives = append(gives, g)
			}
		}
		q.gives = later
		sweeps := q.sweeps
		q.sweeps = nil
		var drops []*entry
		var due []refreshItem
		next := now.Add(time.Hour)
		for rk, e := range q.entries {
			if e.drop || (e.rm == nil && !e.lingerTill.IsZero() && !now.Before(e.lingerTill)) {
				delete(q.entries, rk)
				e.gone = true
				drops = append(drops, e)
				continue
			}
			if e.queued && !now.Before(e.next) {
				due = append(due, refreshItem{e: e, data: e.data(q.anchor(), q.counted), renew: e.refreshes%4 == 3})
				e.refreshes++
				e.next = now.Add(entryRefresh(time.Duration(e.ttlMs) * time.Millisecond))
			}
			if e.queued && e.next.Before(next) {
				next = e.next
			}
			if e.rm == nil && !e.lingerTill.IsZero() && e.lingerTill.Before(next) {
				next = e.lingerTill
			}
		}
		for _, g := range q.gives {
			if g.at.Before(next) {
				next = g.at
			}
		}
		var forgotten []*entry
		for ch, e := range q.byChannel {
			if !e.gone || e.buried.IsZero() {
				continue
			}
			if gone := e.buried.Add(entryTTL); !now.Before(gone) {
				delete(q.byChannel, ch)
				forgotten = append(forgotten, e)
			} else if gone.Before(next) {
				next = gone
			}
		}
		if len(gives) == 0 && len(sweeps) == 0 && len(drops) == 0 && len(due) == 0 && len(forgotten) == 0 &&
			len(q.gives) == 0 && len(q.entries) == 0 && len(q.byChannel) == 0 {
			q.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()

		for _, g := range gives {
			q.sendGiveBack(g)
		}
		if len(sweeps) > 0 {
			q.sweep(sweeps)
		}
		if len(drops) > 0 {
			q.leave(drops)
		}
		if len(due) > 0 {
			q.refresh(due)
		}
		q.forget(forgotten)
		if len(gives) > 0 || len(sweeps) > 0 || len(drops) > 0 || len(forgotten) > 0 {
			continue // look again: the manager may be done
		}

		timer.Reset(time.Until(next))
		select {
		case <-kick:
		case <-timer.C:
		}
	}
}

// sendGiveBack releases a turn nobody takes: the lock goes on to the next
// live entry (passing over this Locker's), or is freed. A send that gets
// no answer is tried again later (up to giveBackTries, backing off from
// 50ms to 1s): the turn is marked seen, so nothing else would give it
// back.
func (q *queue) sendGiveBack(g giveBack) {
	ctx, cancel := context.WithTimeout(context.Background(), queueIOTimeout)
	defer cancel()
	run := q.lk.conns.get()
	op := releaseOp(g.rk, g.token, q.w.publishArg, g.pass, "")
	err := sendOnce(ctx, run, &op).Err()
	q.lk.conns.done()
	var rerr redis.Error
	if err == nil || errors.As(err, &rerr) || g.tries+1 >= giveBackTries {
		return // answered (a Redis error is an answer too), or given up
	}
	g.tries++
	g.at = time.Now().Add(min(50*time.Millisecond<<(g.tries-1), time.Second))
	q.w.mu.Lock()
	q.gives = append(q.gives, g)
	q.w.mu.Unlock()
}

// leave takes entries out of their queues. Best effort: an entry left
// behind expires within entryTTL.
func (q *queue) leave(drops []*entry) {
	ctx, cancel := context.WithTimeout(context.Background(), queueIOTimeout)
	defer cancel()
	pipe := q.lk.conns.client.Pipeline()
	for _, e := range drops {
		pipe.LRem(ctx, queueKey(e.rk), 0, e.id)
		pipe.Del(ctx, e.key)
		if e.nudged {
			// Somebody behind it may have found the lock free and be
			// waiting for this entry to take it: wake the room heads.
			if q.w.publish == publishSharded {
				pipe.SPublish(ctx, wakeChannel(e.rk), "")
			} else {
				pipe.Publish(ctx, wakeChannel(e.rk), "")
			}
		}
	}
	_, _ = pipe.Exec(ctx)
	// A turn handed to an entry just before it left may still be on its
	// way: the entry stays known by its channel, and listened to, for
	// entryTTL, so that such a turn is given back, not dropped (closing
	// the subscription would lose it, and the lock would stay with
	// nobody until its TTL). Nothing is handed to it once it left.
	now := time.Now()
	q.w.mu.Lock()
	for _, e := range drops {
		e.buried = now
	}
	q.w.mu.Unlock()
}

// forget stops listening on the channels of entries that left entryTTL
// ago.
func (q *queue) forget(buried []*entry) {
	for _, e := range buried {
		q.w.notifiers[0].unwatch(e.channel)
		q.w.notifiers[0].unwatch(wakeChannel(e.rk))
	}
}

// refresh rewrites the due entries (and their queues' expiry). An entry
// found gone (it expired, or a release found its waiter dead) is no longer
// queued: its room's head attempts, which queues it again at the tail.
func (q *queue) refresh(due []refreshItem) {
	ctx, cancel := context.WithTimeout(context.Background(), queueIOTimeout)
	defer cancel()
	pipe := q.lk.conns.client.Pipeline()
	sets := make([]*redis.StatusCmd, len(due))
	for i, it := range due {
		sets[i] = pipe.SetArgs(ctx, it.e.key, it.data, redis.SetArgs{Mode: "XX", TTL: entryTTL})
		if it.renew {
			pipe.PExpire(ctx, queueKey(it.e.rk), queueTTL)
		}
	}
	_, _ = pipe.Exec(ctx)
	var wake []*room
	q.w.mu.Lock()
	for i, it := range due {
		err := sets[i].Err()
		if err == redis.Nil && !it.e.gone {
			it.e.queued = false
			it.e.handed = time.Time{}
			if it.e.rm != nil {
				wake = append(wake, it.e.rm)
			}
		}
	}
	q.w.mu.Unlock()
	for _, rm := range wake {
		rm.wake()
	}
}

// releaseOp is release.lua's operation for the lock rk held with token,
// publishing as how says (waiters.publishArg), handing the lock over to
// the first live waiter queued for it, passing over entry pass ("" for
// none). nonce, when not "", is a fresh random string for a token that
// may have been stored before (see release.lua): the heir's token is
// then new all the same.
func releaseOp(rk, token string, how any, pass, nonce string) nodeOp {
	if nonce != "" {
		return nodeOp{script: releaseScript, keys: []string{rk}, args: []any{token, how, pass, nonce}}
	}
	return nodeOp{script: releaseScript, keys: []string{rk}, args: []any{token, how, pass}}
}
