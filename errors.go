package distlock

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrNotObtained means the lock is held by someone else: the attempt (or
	// every attempt the retry strategy allowed, or every attempt before ctx
	// ended) found it taken. It never stands for a Redis error, which is
	// returned wrapped instead.
	ErrNotObtained = errors.New("distlock: not obtained")

	// ErrNotHeld means this holder no longer has the lock: it expired, was
	// deleted or taken over, or was already released. Lock.Err, Release,
	// Refresh and TTL return errors that match it (errors.Is).
	ErrNotHeld = errors.New("distlock: not held")

	// ErrUnknownOutcome is matched by the error of a Release whose outcome
	// is not known: the release may have reached Redis and run, but no
	// answer came back (a timeout, a broken connection). The lock is then
	// either released, or left in Redis until its TTL runs out; nobody
	// else can hold it meanwhile. The error also wraps the cause. Release
	// may be called again: it returns nil when it finds the lock gone while
	// still valid, as the earlier release deleted it.
	ErrUnknownOutcome = errors.New("distlock: unknown outcome")

	// ErrInvalidArgument is matched by every error about bad input: an empty
	// key (or, to ObtainMulti, no keys or a key given twice), a TTL ≤ 0 or
	// not above the drift allowance, a bad drift factor, a nil retry
	// strategy, no client or a nil client, a Redlock of fewer than 3 nodes,
	// WithToken given to New or NewRedlock, a nil fn. The message names the
	// problem.
	ErrInvalidArgument = errors.New("distlock: invalid argument")

	// ErrNotReplicated means fewer replicas acknowledged a write of the lock
	// than WithReplicas asked for within its timeout. An Obtain that fails
	// this way has given the unacknowledged lock back; a Refresh that fails
	// this way did not move ValidUntil. The error is a *ReplicationError,
	// which tells how many acknowledged.
	ErrNotReplicated = errors.New("distlock: not replicated")
)

// ErrForceReleased means an operator force-released the lock (ForceRelease,
// or the CLI's "distlock release --force") while this holder had it. It
// matches ErrNotHeld too (errors.Is): the holder learns it at its next
// refresh (Done closes and Err returns it; the auto-refresh's next round,
// within TTL/3) or Release, as long as that comes within the lock's TTL
// at the time of the force release (plus a second), for which its marker
// lasts. Later, or after a hand-over to a waiter of the same Locker, the
// loss reads as a plain ErrNotHeld.
var ErrForceReleased = fmt.Errorf("%w: force-released by an operator", ErrNotHeld)

// ReplicationError is the error of a lock write that fewer replicas than
// WithReplicas asked for acknowledged in time. It matches ErrNotReplicated.
type ReplicationError struct {
	Acked  int // replicas that acknowledged the write
	Wanted int // replicas WithReplicas asked for
}

func (e *ReplicationError) Error() string {
	return fmt.Sprintf("%v: %d of %d replicas acknowledged", ErrNotReplicated, e.Acked, e.Wanted)
}

// Is reports whether target is ErrNotReplicated.
func (e *ReplicationError) Is(target error) bool { return target == ErrNotReplicated }

// ErrExpired is matched, together with ErrNotHeld, by the error of a lock
// whose validity (ValidUntil) ran out before a refresh confirmed it: no
// refresh was due (no WithAutoRefresh), or the refreshes failed (Redis
// slow or unreachable; the error then also wraps the last refresh's
// error). Lock.Err, Release, Refresh and TTL return it; an Observer sees it
// as the cause of an EventLost. The other reasons a lock is lost are
// ErrForceReleased and, for a lock deleted or taken over in Redis, an error
// that matches only ErrNotHeld.
var ErrExpired = fmt.Errorf("%w: validity ran out before a refresh confirmed it", ErrNotHeld)

// Reasons a lock ends without the holder's Release; all match ErrNotHeld.
var (
	errExpired  = ErrExpired
	errGone     = fmt.Errorf("%w: the lock was deleted or taken over", ErrNotHeld)
	errReleased = fmt.Errorf("%w: already released", ErrNotHeld)
	// A release's findings (release.lua).
	errVanished  = fmt.Errorf("%w: the lock had expired or was deleted", ErrNotHeld)
	errTakenOver = fmt.Errorf("%w: the lock was taken over by another holder", ErrNotHeld)
	// A force release's finding (force_release.lua).
	errNoLock = fmt.Errorf("%w: no such lock", ErrNotHeld)
)

// unknownOutcome wraps the error of a command that may have run in Redis
// although no answer came back (a timeout, a broken connection); an error
// reply from Redis, after which nothing was written, is returned as is.
func unknownOutcome(err error) error {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
}

// errTokenDefault is the error of New and NewRedlock given WithToken.
var errTokenDefault = invalidf("WithToken is a per-call option (Obtain, Do): as a default every caller would share one token and re-attach to each other's lock")

// errSharedDefault is the error of New and NewRedlock given WithShared or
// WithLimit.
var errSharedDefault = invalidf("WithShared and WithLimit are per-call options (Obtain, Do)")

// errSharedRedlock is the error of a Redlock call given WithShared or
// WithLimit.
var errSharedRedlock = invalidf("WithShared and WithLimit do not apply to a Redlock: a quorum of per-node counts does not bound the holders")

// errFairRedlock is the error of WithFairness(true) on a Redlock: every
// node would keep a queue of its own, and a quorum of queues does not give
// one order of the waiters.
var errFairRedlock = invalidf("WithFairness(true) applies to a Locker: a Redlock's nodes would each keep a queue, and a quorum of queues gives no one order")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...)
}

// notObtainedByCtx is the error of an Obtain whose ctx ended before the lock
// was obtained: it matches ErrNotObtained and ctx's error, and reads
// `obtain "k": distlock: not obtained: context deadline exceeded`.
func notObtainedByCtx(op, key string, ctxErr error) error {
	return fmt.Errorf("%s %q: %w", op, key, &joinedError{errs: []error{ErrNotObtained, ctxErr}, sep: ": "})
}

// ErrAlreadyDone means Once did not run fn because the work for the key was
// done within its window: a call of Once for the key succeeded less than
// window ago (counted from that success). It is not ErrNotObtained, which
// means the work is in progress elsewhere; Once returns ErrAlreadyDone also
// to callers that waited (WithBlocking) for the run in progress to succeed.
var ErrAlreadyDone = errors.New("distlock: already done")

// joinErrors is errors.Join printed on one line: the non-nil errors
// separated by "; ". It returns nil when every err is nil.
func joinErrors(errs ...error) error {
	e := &joinedError{sep: "; "}
	for _, err := range errs {
		if err != nil {
			e.errs = append(e.errs, err)
		}
	}
	switch len(e.errs) {
	case 0:
		return nil
	case 1:
		return e.errs[0]
	}
	return e
}

// joinedError is several errors, each matched by errors.Is and errors.As,
// printed on one line (errors.Join puts each on a line of its own, which
// breaks one-line logs).
type joinedError struct {
	errs []error
	sep  string
}

func (e *joinedError) Error() string {
	var b strings.Builder
	for i, err := range e.errs {
		if i > 0 {
			b.WriteString(e.sep)
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the joined errors.
func (e *joinedError) Unwrap() []error { return e.errs }

// ErrNodeTimeout is matched (errors.Is) by the NodeError of a Redlock node
// that did not answer within the node timeout (WithNodeTimeout). It does
// not match context.DeadlineExceeded: the caller's ctx did not end.
var ErrNodeTimeout = errors.New("distlock: node timeout")

// errNotAwaited is the Err of an EventNode for a node whose answer the
// attempt did not wait for: its last answer timed out, and a quorum of the
// other nodes had answered.
var errNotAwaited = fmt.Errorf("%w: answer not awaited (the node was slow, and a quorum had answered)", ErrNodeTimeout)

// A NodeError is the failure of one node of a Redlock in one operation: a
// timeout (matching ErrNodeTimeout), a connection error, or a Redis error
// reply. Err is the cause and is what Unwrap returns.
type NodeError struct {
	// Node is the node's index in the clients given to NewRedlock.
	Node int
	// Addr is the node's address as its client reports it, or "" when the
	// client does not tell (e.g. a Sentinel-backed client).
	Addr string
	// Err is what went wrong on that node.
	Err error
}

func (e *NodeError) Error() string {
	if e.Addr != "" {
		return fmt.Sprintf("node %d (%s): %v", e.Node, e.Addr, e.Err)
	}
	return fmt.Sprintf("node %d: %v", e.Node, e.Err)
}

// Unwrap returns the node's error.
func (e *NodeError) Unwrap() error { return e.Err }

// A QuorumError says that a Redlock operation (Obtain, Refresh, Release, TTL)
// did not reach a quorum of N/2+1 nodes and that failing nodes were part of
// the reason. It carries one NodeError per failing node; errors.As finds it
// in the error returned by the operation, and errors.Is sees through it to
// every node's error (e.g. ErrNodeTimeout).
//
// It matches ErrNotObtained (Obtain) or ErrNotHeld (Refresh, Release, TTL)
// only when the nodes that answered "held by someone else" or "not held"
// decided the outcome; when the failing nodes alone made the quorum
// impossible it matches neither, and the operation is not retried. A
// Release that failed that way matches ErrUnknownOutcome: the nodes that
// did not answer may have released the lock.
type QuorumError struct {
	// Op is the operation: "obtain", "refresh", "release", "ttl",
	// "status" or "once".
	Op string
	// Nodes is N, the number of nodes of the Redlock.
	Nodes int
	// Quorum is N/2+1, the number of nodes the operation needed.
	Quorum int
	// OK is the number of nodes on which the operation succeeded.
	OK int
	// Refused is the number of nodes that answered that someone else holds
	// the lock (Obtain) or that this holder no longer holds it (Refresh,
	// Release, TTL). Refresh, Release and TTL ask only the nodes that may
	// hold the lock: not those where someone else held it when it was
	// obtained, which never had it and are not counted here.
	Refused int
	// Errors has one entry per node that failed, in node order.
	Errors []*NodeError

	match error // ErrNotObtained, errGone or nil: see the type's doc
}

func (e *QuorumError) Error() string {
	var b strings.Builder
	refused := "no longer held"
	if e.Op == "obtain" {
		refused = "held by another"
	}
	fmt.Fprintf(&b, "distlock: no quorum: %d of %d nodes ok, %d needed, %d %s, %d failed",
		e.OK, e.Nodes, e.Quorum, e.Refused, refused, len(e.Errors))
	for i, ne := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(ne.Error())
	}
	return b.String()
}

// Unwrap returns every node's error, and the sentinel the error stands for
// when contention or loss decided the outcome (see the type's doc).
func (e *QuorumError) Unwrap() []error {
	errs := make([]error, 0, len(e.Errors)+1)
	if e.match != nil {
		errs = append(errs, e.match)
	}
	for _, ne := range e.Errors {
		errs = append(errs, ne)
	}
	return errs
}

// errNoQueue is a queued attempt's answer (fair.go) when the user may not
// queue: the caller makes a plain attempt instead.
var errNoQueue = errors.New("distlock: no permission to queue")

// errReadersHold is a queued attempt's answer (fair.go) when shared leases
// hold the lock: the caller stays queued and records its claim as a
// blocked writer (shared.go), so that no new shared lease starts.
var errReadersHold = errors.New("distlock: shared leases hold the lock")
