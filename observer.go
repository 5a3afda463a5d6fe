package distlock

import (
	"fmt"
	"time"
)

// An Observer is told what happens to locks: one Event per attempt outcome,
// per refresh, per loss, per release, per hand-over, and for a Redlock per
// node. Set one with WithObserver (on New or NewRedlock for every call, or
// on one call). contrib/otel turns events into OpenTelemetry metrics and
// spans; SlogObserver logs them.
//
// Observe is called synchronously on the path of the lock operation (the
// caller's goroutine, or the auto-refresher's), so it must be quick and must
// not block; it may be called from several goroutines at once. It must not
// call back into the Lock the event is about. An Observer that panics
// panics the caller.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to an Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event. The fields each kind sets are listed beside it; Key
// and Kind are always set.
const (
	// EventObtained: Obtain (or Do, Once, …) took the lock. Wait is the
	// time from the call's start, Attempts the number of attempts, Fence
	// the lock's fence (0 without WithFencing). A hand-over is not an
	// attempt of the waiter: a blocked caller handed the lock before it
	// made an attempt of its own reports 0.
	EventObtained EventKind = iota + 1
	// EventContended: one attempt found the key held by someone else. The
	// call goes on waiting or retrying when its options say so; Attempts
	// counts attempts so far.
	EventContended
	// EventNotObtained: the call gave up without the lock, either because
	// the key stayed held (Err matches ErrNotObtained) or because of an
	// error (Err is that error: a Redis error, a ctx that ended, a
	// QuorumError). Wait and Attempts as for EventObtained.
	EventNotObtained
	// EventRefreshed: a refresh (Refresh, or the auto-refresher) moved the
	// lock's validity. Late is true when it landed in the last third of
	// the lock's validity, that is, later than the auto-refresher aims.
	EventRefreshed
	// EventRefreshFailed: a refresh failed with a transient error (Err);
	// the lock is still held until its validity runs out.
	EventRefreshFailed
	// EventLost: the lock was lost before Release (Err says why: expired,
	// deleted, taken over, force-released). Held is the time since it was
	// obtained.
	EventLost
	// EventReleased: Release gave the lock back (Err is nil) or failed
	// (Err). Held is the time since it was obtained. Once marking its work
	// done, and TickClaim.Finish, end the hold the same way. A Release
	// that finds the lock already gone reports EventLost instead, and a
	// Release after the end was reported (a second one) reports nothing.
	EventReleased
	// EventHandedOver: Release passed the lock straight to a caller
	// waiting for it, without freeing it in between: a caller of the same
	// Locker, or, waiting in turn (WithFairness), the first caller queued
	// for it in any process, whose Obtain then reports EventObtained. Held
	// is the releaser's hold time.
	EventHandedOver
	// EventNode: a Redlock attempt's outcome on one node: Node is its index
	// in the clients given to NewRedlock, Err nil when it took the key
	// there, matching ErrNotObtained when the key was held there, or the
	// node's error.
	EventNode
)

var eventKindNames = [...]string{
	EventObtained:      "obtained",
	EventContended:     "contended",
	EventNotObtained:   "not_obtained",
	EventRefreshed:     "refreshed",
	EventRefreshFailed: "refresh_failed",
	EventLost:          "lost",
	EventReleased:      "released",
	EventHandedOver:    "handed_over",
	EventNode:          "node",
}

// String returns the kind's snake_case name ("obtained", "lost", …), fit for
// a metric attribute.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// An Event is one thing that happened to a lock; see EventKind for which
// fields each kind sets. It never carries the lock's token. Key is the key
// as the caller gave it (without the prefix): an Observer that feeds
// metrics should map keys of unbounded variety (user ids, order ids) to a
// few names before using them as attributes.
type Event struct {
	Kind     EventKind
	Key      string
	Redlock  bool          // the lock is a Redlock's
	Attempts int           // EventObtained, EventContended, EventNotObtained
	Wait     time.Duration // EventObtained, EventNotObtained
	Held     time.Duration // EventLost, EventReleased, EventHandedOver
	Fence    int64         // EventObtained with WithFencing
	Late     bool          // EventRefreshed
	Node     int           // EventNode: the node's index; -1 otherwise
	Err      error
}

type observerOption struct{ o Observer }

func (w observerOption) apply(o *options) { o.observer = w.o }
func (w observerOption) String() string   { return fmt.Sprintf("WithObserver(%T)", w.o) }

// WithObserver sends the events of every lock operation to obs (see
// Observer). On New or NewRedlock it observes every call; on one call it
// replaces that default for the call, and the Lock the call obtains keeps
// reporting its refreshes, loss and release to obs. Default: none, at no
// cost. A nil obs (also a nil ObserverFunc or a nil pointer) turns
// observing off. A call rejected for bad input (ErrInvalidArgument before
// any attempt) reports nothing.
func WithObserver(obs Observer) Option {
	if isNil(obs) {
		obs = nil
	}
	return observerOption{obs}
}

// Emitting events. Every call below does nothing, and costs no allocation,
// when no observer is set: the lock operations call them unconditionally.

// obtainObs reports the events of one call that obtains a lock (Obtain,
// Once; Do, ClaimTick, OncePerTick and Lead go through Obtain): each
// attempt that finds the key held, the outcome, and for a Redlock each
// node's answer to each attempt. It is nil when the call has no observer,
// and every method of a nil *obtainObs does nothing. Only the calling
// goroutine uses it.
type obtainObs struct {
	obs      Observer
	key      string
	redlock  bool
	start    time.Time
	attempts int
}

// newObtainObs returns the reporter of one obtaining call with the resolved
// options o, or nil when o has no observer.
func newObtainObs(o options, key string, redlock bool) *obtainObs {
	if o.observer == nil {
		return nil
	}
	return &obtainObs{obs: o.observer, key: key, redlock: redlock, start: time.Now()}
}

func (c *obtainObs) event(kind EventKind) Event {
	return Event{Kind: kind, Key: c.key, Redlock: c.redlock, Attempts: c.attempts, Node: -1}
}

// attempt counts an attempt; call it as the attempt starts.
func (c *obtainObs) attempt() {
	if c != nil {
		c.attempts++
	}
}

// contended reports that the current attempt found the key held.
func (c *obtainObs) contended() {
	if c != nil {
		c.obs.Observe(c.event(EventContended))
	}
}

// done reports the call's outcome and returns its arguments, so that a
// call can end with return c.done(l, err). An obtained Lock reports its own
// events from then on, to the same observer.
func (c *obtainObs) done(l *Lock, err error) (*Lock, error) {
	if c == nil {
		return l, err
	}
	e := c.event(EventNotObtained)
	e.Wait = time.Since(c.start)
	if l == nil {
		e.Err = err
		c.obs.Observe(e)
		return l, err
	}
	e.Kind, e.Fence = EventObtained, l.fence
	c.obs.Observe(e)
	l.handOut()
	return l, err
}

// observeAttempt reports one Redlock attempt whose fan-out ended with res:
// one EventNode per node, in node order, then EventContended when holders
// on other nodes kept it from a quorum. fatal says that something else
// decided the outcome (failing nodes alone, or Once's done marker).
func (b *redlockBackend) observeAttempt(res fanResult, fatal bool) {
	c := b.obs
	if c == nil {
		return
	}
	for i, v := range res.verdicts {
		e := Event{Kind: EventNode, Key: c.key, Redlock: true, Node: i}
		switch {
		case nodeErr(res.errs, i) != nil:
			e.Err = nodeErr(res.errs, i)
		case v == vRefused:
			e.Err = ErrNotObtained
		case v == vNone:
			e.Err = errNotAwaited
		}
		c.obs.Observe(e)
	}
	if !fatal && res.ok < b.r.quorum && res.refused > 0 {
		c.contended()
	}
}

// nodeErr returns node i's error among errs, nil when it has none.
func nodeErr(errs []*NodeError, i int) error {
	for _, ne := range errs {
		if ne.Node == i {
			return ne
		}
	}
	return nil
}

// lockObs is a Lock's part in observing: the observer of the call that
// obtained it, and what has been reported of it. A Lock reports nothing
// until it is handed to the caller (after EventObtained), and reports its
// end once: EventLost, EventReleased or EventHandedOver. A Lock without an
// observer has none (nil), so that it costs nothing.
type lockObs struct {
	obs Observer // the obtaining call's, not nil

	// Guarded by Lock.mu:
	out       bool          // handed to the caller: events are reported
	since     time.Time     // when it was handed out, for Held
	span      time.Duration // the length of the current validity, for Late
	releasing bool          // a Release runs: it reports the end itself
	ended     bool          // the end was reported
}

// newLockObs returns the observing state of a Lock obtained with the
// resolved options o, nil when o has no observer.
func newLockObs(o options) *lockObs {
	if o.observer == nil {
		return nil
	}
	return &lockObs{obs: o.observer}
}

func (l *Lock) event(kind EventKind) Event {
	_, rl := l.b.(*redlockBackend)
	return Event{Kind: kind, Key: l.key, Redlock: rl, Node: -1}
}

// endEventLocked is the event of l's end.
func (l *Lock) endEventLocked(kind EventKind, err error) Event {
	e := l.event(kind)
	e.Held = time.Since(l.ob.since)
	e.Err = err
	return e
}

// handOut starts reporting l's events, once the call that obtained it has
// reported EventObtained. A loss that came first is reported now.
func (l *Lock) handOut() {
	if l.ob == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ob.out, l.ob.since = true, time.Now()
	l.ob.span = l.ttl - (options{drift: l.drift}).driftFor(l.ttl)
	l.reportLossLocked()
}

// reportLossLocked reports the loss of l (l.err), unless a Release runs:
// the Release reports the end when it knows what it was.
func (l *Lock) reportLossLocked() {
	if l.ob == nil || !l.ob.out || l.ob.ended || l.ob.releasing || !l.ended || l.err == nil {
		return
	}
	l.ob.ended = true
	l.ob.obs.Observe(l.endEventLocked(EventLost, l.err))
}

// beginRelease marks a Release of l as running, so that a loss reported
// meanwhile (a refresh in flight finding the key the release deleted) is
// left for the Release to sort out.
func (l *Lock) beginRelease() {
	if l.ob == nil {
		return
	}
	l.mu.Lock()
	l.ob.releasing = true
	l.mu.Unlock()
}

// reportReleaseLocked reports the end of l by a Release (or Once's
// finish) that returned err, unless it was reported already: EventLost when
// the lock turned out lost (l.err), EventReleased otherwise.
func (l *Lock) reportReleaseLocked(err error) {
	if l.ob == nil {
		return
	}
	l.ob.releasing = false
	if !l.ob.out || l.ob.ended {
		return
	}
	l.ob.ended = true
	if l.err != nil {
		l.ob.obs.Observe(l.endEventLocked(EventLost, l.err))
		return
	}
	l.ob.obs.Observe(l.endEventLocked(EventReleased, err))
}

// reportRelease is reportReleaseLocked for a caller without l.mu.
func (l *Lock) reportRelease(err error) {
	if l.ob == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reportReleaseLocked(err)
}

// reportHandOver reports that a release handed l to a waiter (handed:
// the waiter got the lock; otherwise the hand-over gave it nothing, and
// the release is then reported as one).
func (l *Lock) reportHandOver(handed bool) {
	if l.ob == nil || !handed {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ob.out || l.ob.ended {
		return
	}
	l.ob.ended = true
	l.ob.obs.Observe(l.endEventLocked(EventHandedOver, nil))
}

// reportRefreshLocked reports a refresh that confirmed l for a new validity
// of length span; call it before validUntil moves. It is late when it
// landed in the last third of the validity it replaces.
func (l *Lock) reportRefreshLocked(span time.Duration) {
	if l.ob == nil || !l.ob.out {
		return
	}
	e := l.event(EventRefreshed)
	e.Late = time.Until(l.validUntil) < l.ob.span/3
	l.ob.span = span
	l.ob.obs.Observe(e)
}

// reportRefreshFailedLocked reports a refresh that failed with a transient
// error while l is still held.
func (l *Lock) reportRefreshFailedLocked(err error) {
	if l.ob == nil || !l.ob.out || l.ended {
		return
	}
	e := l.event(EventRefreshFailed)
	e.Err = err
	l.ob.obs.Observe(e)
}
