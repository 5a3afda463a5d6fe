package distlock

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// attemptFunc makes one attempt to take a lock. It returns the Lock on
// success; otherwise holderTTL is how long the current holder's lock still
// lives (0: already gone, retry at once; < 0: unknown) and err any error
// other than contention.
type attemptFunc func(ctx context.Context) (l *Lock, holderTTL time.Duration, err error)

// usable returns l when its validity has not passed yet, and otherwise
// ends it (its keys expire within the drift allowance: nothing to send)
// and returns nil, so that no Obtain hands out a lock that is already
// dead (say, after a stall between the attempt and the return).
func usable(l *Lock) *Lock {
	if l == nil || time.Now().Before(l.ValidUntil()) {
		return l
	}
	_ = l.Release(context.Background()) // returns at once: the validity has run out
	return nil
}

// sleep waits for d or until ctx is done, whichever comes first, and
// returns ctx's error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Waiting without polling. A blocked Obtain subscribes (through the
// owner's notifiers, one shared subscription per node) to the lock's wake
// channel, on which the release script publishes, and retries when a
// release is published, when the holder's TTL runs out (expiry publishes
// nothing), when the subscription reconnects (messages may have been
// missed), or at the latest after the fallback delay.
//
// Callers of one Locker (or Redlock) blocked on the same key are coalesced
// in a room: they queue in arrival order and only the head of the queue
// sends attempts to Redis, one per wake-up, so a process costs Redis one
// attempt per release however many of its goroutines wait. When the head
// obtains the lock the next in line becomes head and waits for that lock's
// release; when the head gives up the next one attempts at once.

// Blocked callers without a retry strategy of their own re-check at least
// this often even when no wake-up arrives.
var defaultBlockingFallback = ExponentialBackoff(200*time.Millisecond, 2*time.Second)

// readyTimeout bounds the wait for a subscription to be confirmed before
// the first retry; past it the waiter goes on, capped by the holder's TTL.
const readyTimeout = time.Second

// waiters coordinates the blocked callers of one Locker or Redlock.
type waiters struct {
	notifiers []*notifier
	publish   string // how releases publish their wake-ups (notify.go), an argument of the scripts that do
	// publishArg is publish as a script argument, boxed once (a release
	// does not allocate it).
	publishArg any

	// lostWakeups counts releases that freed a lock but could not
	// publish its wake-up (see Locker.LostWakeups).
	lostWakeups atomic.Uint64

	mu        sync.Mutex
	rooms     map[string]*room // by lock key
	fairRooms map[string]*room // by lock key: callers waiting their turn (fair.go)
	q         *queue           // the owner's queue entries; nil on a Redlock
}

// room is the queue of one owner's callers blocked on one lock key.
type room struct {
	queue     []*ticket // guarded by waiters.mu; queue[0] is the head
	parked    *ticket   // guarded by waiters.mu: the head, while open to a hand-over
	handovers int       // guarded by waiters.mu: consecutive hand-overs

	wakeMu sync.Mutex
	wakeCh chan struct{} // closed (and replaced) on every wake-up

	// Fair rooms (fair.go), guarded by waiters.mu.
	fair    bool
	entry   *entry // the owner's place in the key's queue in Redis
	pending *grant // a turn that came while nobody was parked
}

// ticket is one blocked caller's place in a room.
type ticket struct {
	turn  chan turn  // receives once when the caller becomes head
	heir  *heir      // nil when the owner does not hand locks over
	grant chan *Lock // receives the outcome of a hand-over once claimed
	// claim is the state of the current hand-over once claimed: whether
	// the releaser delivered it first, or the waiter left first.
	claim atomic.Int32
}

// States of ticket.claim.
const (
	claimPending   = iota // claimed: the hand-over runs
	claimDelivered        // the releaser sent the outcome on grant
	claimAbandoned        // the waiter's ctx ended first: it left
)

// deliver reports whether the waiter still waits for the hand-over's
// outcome; when it does, the outcome must be sent on grant.
func (tk *ticket) deliver() bool {
	return tk.claim.CompareAndSwap(claimPending, claimDelivered)
}

// abandon reports whether the waiter may leave without the outcome; when
// it may not, the outcome is (or is about to be) on grant.
func (tk *ticket) abandon() bool {
	return tk.claim.CompareAndSwap(claimPending, claimAbandoned)
}

// turn is what a caller needs to act as head.
type turn struct {
	attempt   bool            // try at once
	wake      <-chan struct{} // the wake-up to wait for otherwise
	holderTTL time.Duration   // cap on the wait, < 0 when unknown
}

func newWaiters(clients []redis.UniversalClient) *waiters {
	w := &waiters{rooms: make(map[string]*room), fairRooms: make(map[string]*room)}
	w.notifiers, w.publish = newNotifiers(clients, w.wakeChannel, w.wakeAll)
	w.publishArg = w.publish
	return w
}

// wakeChannel wakes the room whose wake channel is channel, or hands a
// queue entry of the owner the turn published on its channel.
func (w *waiters) wakeChannel(channel, payload string) {
	if w.q != nil && w.q.onMessage(channel, payload) {
		return
	}
	rk := strings.TrimSuffix(channel, wakeSuffix)
	w.mu.Lock()
	rm, frm := w.rooms[rk], w.fairRooms[rk]
	w.mu.Unlock()
	if rm != nil {
		rm.wake()
	}
	if frm != nil {
		frm.wake() // freed, not handed over (a force release, shared leases)
	}
}

func (w *waiters) wakeAll() {
	if w.q != nil {
		w.q.missed()
	}
	w.mu.Lock()
	rooms := make([]*room, 0, len(w.rooms)+len(w.fairRooms))
	for _, rm := range w.rooms {
		rooms = append(rooms, rm)
	}
	for _, rm := range w.fairRooms {
		rooms = append(rooms, rm)
	}
	w.mu.Unlock()
	for _, rm := range rooms {
		rm.wake()
	}
}

func (rm *room) wake() {
	rm.wakeMu.Lock()
	close(rm.wakeCh)
	rm.wakeCh = make(chan struct{})
	rm.wakeMu.Unlock()
}

// next returns the channel that the next wake-up closes.
func (rm *room) next() <-chan struct{} {
	rm.wakeMu.Lock()
	defer rm.wakeMu.Unlock()
	return rm.wakeCh
}

// roomsOf returns the rooms of fair or of barging callers.
func (w *waiters) roomsOf(fair bool) map[string]*room {
	if fair {
		return w.fairRooms
	}
	return w.rooms
}

// busy reports whether callers of this owner already wait for rk (fairly
// or not, as fair says).
func (w *waiters) busy(rk string, fair bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.roomsOf(fair)[rk] != nil
}

// join queues a caller for rk, in the fair or in the barging room; first
// reports that it made the room (and so is head and must subscribe).
func (w *waiters) join(rk string, h *heir, fair bool) (rm *room, tk *ticket, first bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	tk = &ticket{turn: make(chan turn, 1), heir: h, grant: make(chan *Lock, 1)}
	rooms := w.roomsOf(fair)
	rm = rooms[rk]
	if rm == nil {
		rm = &room{wakeCh: make(chan struct{}), fair: fair}
		rooms[rk] = rm
		first = true
	}
	rm.queue = append(rm.queue, tk)
	return rm, tk, first
}

// leave takes tk out of the room. When tk was head, the next caller
// becomes head: it waits for the release of the lock tk obtained (holder
// TTL ttl), or attempts at once when tk gave up. The last caller out closes
// the room and drops its subscriptions.
func (w *waiters) leave(rk string, rm *room, tk *ticket, obtained bool, ttl time.Duration) {
	w.mu.Lock()
	head := len(rm.queue) > 0 && rm.queue[0] == tk
	for i, q := range rm.queue {
		if q == tk {
			rm.queue = append(rm.queue[:i], rm.queue[i+1:]...)
			break
		}
	}
	if head && len(rm.queue) > 0 {
		t := turn{attempt: true, holderTTL: -1}
		if obtained {
			t = turn{wake: rm.next(), holderTTL: ttl}
		}
		rm.queue[0].turn <- t
	}
	empty := len(rm.queue) == 0
	if empty {
		delete(w.roomsOf(rm.fair), rk)
		if rm.fair {
			w.q.closedLocked(rm, obtained)
		}
	}
	w.mu.Unlock()
	if empty && !rm.fair { // a fair room's channels are its entry's (fair.go)
		for _, n := range w.notifiers {
			n.unwatch(wakeChannel(rk))
		}
	}
}

// subscribe watches rk's wake channel on every node and waits until the
// subscriptions are confirmed on a quorum of the nodes (all of them for a
// Locker's one node), at most until limit or ctx's end. Confirmations wake
// rm, which is how this wait learns of them.
func (w *waiters) subscribe(ctx context.Context, rk string, rm *room, limit time.Duration) {
	ready := make([]<-chan struct{}, len(w.notifiers))
	for i, n := range w.notifiers {
		ready[i] = n.watch(wakeChannel(rk))
	}
	need := len(ready)/2 + 1
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		wake := rm.next()
		confirmed := 0
		for _, r := range ready {
			select {
			case <-r:
				confirmed++
			default:
			}
		}
		if confirmed >= need {
			return
		}
		select {
		case <-wake:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// An obtainCall is what one Obtain (or Once, or Redlock.Obtain) needs to
// reach the lock besides its attempts: its key, its options, and its
// owner's blocked callers. (The attempt function is obtain's own
// parameter: inside the struct it would be moved to the heap with
// everything the key's error message makes escape.)
type obtainCall struct {
	op  string // names the call in errors: "obtain" when empty, "once"
	key string // as the caller gave it
	rk  string // the lock's Redis key
	o   options
	w   *waiters // the owner's blocked callers (WithBlocking)
	// h, when not nil, lets a releasing holder of the same owner hand the
	// lock over to this caller while it waits.
	h *heir
	// fair makes a blocked caller wait its turn in the key's queue in
	// Redis (fair.go); once it waits in a room its attempts are
	// obtainWith's tryQueued.
	fair bool
}

// obtain is the one retry and wait loop of every primitive. It makes
// attempts (try) until one succeeds, the retry strategy gives up or ctx ends;
// each wait between attempts is capped by the holder's remaining TTL.
//
// A blocked caller (WithBlocking) never gives up before ctx ends: when its
// strategy has no more delays it re-checks after defaultBlockingFallback's.
// It waits in its owner's room (see waiters): the first of the owner's
// callers blocked on the key subscribes to the key's wake channel, then
// attempts; the others wait for their turn as head. A head attempts once
// per wake-up, per expiry of the holder's TTL, or per fallback delay,
// whichever comes first, and may be handed the lock by a release of the
// same owner (c.h).
func obtain(ctx context.Context, try attemptFunc, c obtainCall) (*Lock, error) {
	return obtainWith(ctx, try, nil, c)
}

// obtainWith is obtain with the attempts of a caller that waits its turn
// (c.fair): tryQueued, once it waits in a room. A parameter, not a field
// of c, so that the attempt functions stay on the caller's stack.
func obtainWith(ctx context.Context, try, tryQueued attemptFunc, c obtainCall) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, notObtainedByCtx(c.name(), c.key, err)
	}
	var (
		rm       *room   // the room this caller waits in, once blocked
		tk       *ticket // its place there
		obtained bool
	)
	// Not deferred in the loop: a deferred closure there would move every
	// variable it captures to the heap, for the non-blocking calls too.
	defer func() {
		if rm != nil {
			// A shared lease leaves room for the next caller.
			c.w.leave(c.rk, rm, tk, obtained && !c.o.share.on, c.o.ttl)
		}
	}()
	// A blocked caller tries at once only when no caller of its owner
	// waits for the key already; otherwise it queues behind them.
	t := turn{attempt: !c.o.blocking || !c.w.busy(c.rk, c.fair), holderTTL: -1}
	if t.attempt && c.fair && c.w.q.waitFirst(c.rk, c.o) {
		t.attempt = false // queued, and the lock is held: wait for the turn
	}
	for n := 0; ; {
		if t.attempt {
			var wake <-chan struct{}
			at := try
			if rm != nil {
				wake = rm.next()
				if c.fair {
					at = tryQueued // waiting in turn (fair.go)
				}
			}
			l, ttl, err := at(ctx)
			if err != nil {
				return nil, attemptErr(ctx, c.name(), c.key, err)
			}
			if l = usable(l); l != nil {
				obtained = true
				return l, nil
			}
			t = turn{wake: wake, holderTTL: ttl}
		}
		if c.o.blocking && rm == nil {
			var first bool
			rm, tk, first = c.w.join(c.rk, c.h, c.fair)
			if first {
				// Subscribe before the retry, so that a release between
				// the retry and the wait cannot go unnoticed.
				limit := readyTimeout
				if t.holderTTL >= 0 {
					limit = min(limit, t.holderTTL)
				}
				if c.fair {
					t = c.w.q.enter(ctx, c.rk, rm, c.o, limit)
					continue
				}
				c.w.subscribe(ctx, c.rk, rm, limit)
				t = turn{attempt: true, holderTTL: -1}
				continue
			}
			select {
			case t = <-tk.turn:
			case <-ctx.Done():
				return nil, notObtainedByCtx(c.name(), c.key, ctx.Err())
			}
			if c.fair && !t.attempt && !c.w.q.matches(c.rk, c.o) {
				t.attempt = true // the entry is queued for another TTL or fencing
			}
			continue
		}
		n++
		delay, more := c.o.retry.NextBackoff(n)
		if !more {
			if !c.o.blocking {
				return nil, fmt.Errorf("%s %q: %w", c.name(), c.key, ErrNotObtained)
			}
			delay, _ = defaultBlockingFallback.NextBackoff(n)
		}
		if t.holderTTL >= 0 && delay > t.holderTTL {
			delay = t.holderTTL
		}
		l, err := c.wait(ctx, rm, tk, t.wake, delay)
		if err != nil {
			return nil, err
		}
		if l != nil {
			obtained = true
			return l, nil
		}
		t.attempt = true
	}
}

// wait waits between two attempts: for delay, a wake-up, a hand-over (a
// blocked caller of an owner that hands locks over) or the end of ctx. It
// returns the lock handed over, if any, and ctx's end as an error.
func (c *obtainCall) wait(ctx context.Context, rm *room, tk *ticket, wake <-chan struct{}, delay time.Duration) (*Lock, error) {
	timer := time.NewTimer(delay)
	handOver := c.h != nil && tk != nil
	var grant <-chan *Lock
	if handOver {
		grant = tk.grant
		c.w.park(rm, tk)
	}
	claimed := false
	var l *Lock
	select {
	case <-wake:
	case <-timer.C:
	case <-ctx.Done():
	case l = <-grant:
		claimed = true
	}
	timer.Stop()
	if handOver && !claimed && !c.w.unpark(rm, tk) {
		// A release of this owner is handing the lock over to us: its
		// outcome decides, unless our ctx ends first (then the releaser
		// gives back what it obtained for us).
		select {
		case l = <-grant:
		case <-ctx.Done():
			if tk.abandon() {
				return nil, notObtainedByCtx(c.name(), c.key, ctx.Err())
			}
			l = <-grant // delivered meanwhile: it is there
		}
	}
	if l = usable(l); l != nil {
		return l, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, notObtainedByCtx(c.name(), c.key, err)
	}
	return nil, nil
}

// name is how the call's errors name it.
func (c *obtainCall) name() string {
	if c.op == "" {
		return "obtain"
	}
	return c.op
}

// attemptErr wraps the error of an attempt of call op; nil stays nil.
func attemptErr(ctx context.Context, op, key string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return notObtainedByCtx(op, key, ctxErr)
	}
	return fmt.Errorf("%s %q: %w", op, key, err)
}
