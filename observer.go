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
	// the lock's fence (0 without WithFencing).
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
	// (Err). Held is the time since it was obtained.
	EventReleased
	// EventHandedOver: Release passed the lock straight to a caller of the
	// same Locker waiting for it, without freeing it in between. Held is
	// the releaser's hold time.
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
// replaces that default for the call. Default: none, at no cost. A nil obs
// turns observing off.
func WithObserver(obs Observer) Option { return observerOption{obs} }
