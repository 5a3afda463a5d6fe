package distlock

import (
	"errors"
	"fmt"
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

	// ErrInvalidArgument is matched by every error about bad input: an empty
	// key, a TTL ≤ 0 or not above the drift allowance, a bad drift factor, a
	// nil retry strategy, no client or a nil client. The message names the
	// problem.
	ErrInvalidArgument = errors.New("distlock: invalid argument")

	// ErrNotReplicated means fewer replicas acknowledged a write of the lock
	// than WithReplicas asked for within its timeout. An Obtain that fails
	// this way has given the unacknowledged lock back; a Refresh that fails
	// this way did not move ValidUntil. The error is a *ReplicationError,
	// which tells how many acknowledged.
	ErrNotReplicated = errors.New("distlock: not replicated")
)

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

// Reasons a lock ends without the holder's Release; all match ErrNotHeld.
var (
	errExpired  = fmt.Errorf("%w: validity ran out before a refresh confirmed it", ErrNotHeld)
	errGone     = fmt.Errorf("%w: the lock was deleted or taken over", ErrNotHeld)
	errReleased = fmt.Errorf("%w: already released", ErrNotHeld)
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...)
}

// notObtainedByCtx is the error of an Obtain whose ctx ended before the lock
// was obtained: it matches ErrNotObtained and ctx's error.
func notObtainedByCtx(key string, ctxErr error) error {
	return fmt.Errorf("obtain %q: %w", key, errors.Join(ErrNotObtained, ctxErr))
}

// ErrAlreadyDone means Once did not run fn because the work for the key was
// done within its window: a call of Once for the key succeeded less than
// window ago (counted from that success). It is not ErrNotObtained, which
// means the work is in progress elsewhere; Once returns ErrAlreadyDone also
// to callers that waited (WithBlocking) for the run in progress to succeed.
var ErrAlreadyDone = errors.New("distlock: already done")
