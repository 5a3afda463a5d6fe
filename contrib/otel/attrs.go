package distlockotel

import (
	"context"
	"errors"
	"net"
	"os"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"

	"github.com/distlock/distlock"
)

// Attribute names. Those of distlock's own live under "distlock."; the
// error's class uses the general semantic-convention attribute error.type.
const (
	attrKey           = attribute.Key("distlock.lock.key")
	attrRedlock       = attribute.Key("distlock.redlock")
	attrObtainOutcome = attribute.Key("distlock.obtain.outcome")
	attrAttempt       = attribute.Key("distlock.attempt.outcome")
	attrAttempts      = attribute.Key("distlock.obtain.attempts") // spans only
	attrFence         = attribute.Key("distlock.lock.fence")      // spans only
	attrEnd           = attribute.Key("distlock.lock.end")
	attrLossCause     = attribute.Key("distlock.loss.cause")
	attrRefresh       = attribute.Key("distlock.refresh.outcome")
	attrNode          = attribute.Key("distlock.redlock.node")
	attrErrorType     = attribute.Key("error.type")
)

// A code is the value of an outcome, end, cause or error.type attribute:
// a small number, so that the key of an attribute set hashes fast.
type code uint8

// The codes, and their names (codeNames) as the attributes show them.
const (
	cNone code = iota

	outcomeObtained
	outcomeContended
	outcomeNotObtained
	outcomeError

	endReleased
	endReleaseFailed
	endLost
	endHandedOver

	refreshOK
	refreshLate
	refreshFailed

	errInvalidArgument
	errQuorum
	errUnknownOutcome
	errNotReplicated
	errNotHeld
	errNodeTimeout
	errDeadlineExceeded
	errCanceled
	errRedis
	errTimeout
	errNetwork
	errOther

	causeExpired
	causeForceReleased
	causeGone
	causeUnknown

	codeCount
)

var codeNames = [codeCount]string{
	outcomeObtained:    "obtained",
	outcomeContended:   "contended",
	outcomeNotObtained: "not_obtained",
	outcomeError:       "error",

	endReleased:      "released",
	endReleaseFailed: "release_failed",
	endLost:          "lost",
	endHandedOver:    "handed_over",

	refreshOK:     "ok",
	refreshLate:   "late",
	refreshFailed: "failed",

	errInvalidArgument:  "invalid_argument",
	errQuorum:           "quorum",
	errUnknownOutcome:   "unknown_outcome",
	errNotReplicated:    "not_replicated",
	errNotHeld:          "not_held",
	errNodeTimeout:      "node_timeout",
	errDeadlineExceeded: "deadline_exceeded",
	errCanceled:         "canceled",
	errRedis:            "redis",
	errTimeout:          "timeout",
	errNetwork:          "network",
	errOther:            "_OTHER",

	causeExpired:       "expired",
	causeForceReleased: "force_released",
	causeGone:          "deleted_or_taken_over",
	causeUnknown:       "unknown",
}

func (c code) String() string { return codeNames[c] }

// errorType is the value of error.type for err: a short, fixed name for
// the class of the error, or "_OTHER" (the semantic conventions' fallback)
// for an error none of the classes below matches; cNone for nil. The order
// matters where one error matches several: a Redlock's QuorumError is
// "quorum" whatever its nodes' errors were, and a release of unknown
// outcome is "unknown_outcome" whatever the timeout behind it.
func errorType(err error) code {
	var (
		qe   *distlock.QuorumError
		rerr redis.Error
		nerr net.Error
	)
	switch {
	case err == nil:
		return cNone
	case errors.Is(err, distlock.ErrInvalidArgument):
		return errInvalidArgument
	case errors.As(err, &qe):
		return errQuorum
	case errors.Is(err, distlock.ErrUnknownOutcome):
		return errUnknownOutcome
	case errors.Is(err, distlock.ErrNotReplicated):
		return errNotReplicated
	case errors.Is(err, distlock.ErrNotHeld):
		return errNotHeld
	case errors.Is(err, distlock.ErrNodeTimeout):
		return errNodeTimeout
	case errors.Is(err, context.DeadlineExceeded):
		return errDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return errCanceled
	case errors.As(err, &rerr):
		return errRedis
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return errTimeout
	case errors.As(err, &nerr):
		return errNetwork
	}
	return errOther
}

// lossCauses maps the errors a lost lock reports to the values of
// distlock.loss.cause, first match first: its validity ran out before a
// refresh confirmed it (expired), an operator force-released it
// (force_released), or Redis no longer had it for this holder (deleted or
// taken over: a refresh cannot tell the two apart). A loss that matches
// none (not even ErrNotHeld) is "unknown".
var lossCauses = []struct {
	err   error
	cause code
}{
	{distlock.ErrExpired, causeExpired},
	{distlock.ErrForceReleased, causeForceReleased},
	{distlock.ErrNotHeld, causeGone},
}

// lossCause is the value of distlock.loss.cause for the error of a lost
// lock: see lossCauses.
func lossCause(err error) code {
	for _, c := range lossCauses {
		if errors.Is(err, c.err) {
			return c.cause
		}
	}
	return causeUnknown
}
