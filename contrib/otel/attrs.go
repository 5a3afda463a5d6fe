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

// Values of the outcome attributes.
const (
	outcomeObtained    = "obtained"
	outcomeContended   = "contended"
	outcomeNotObtained = "not_obtained"
	outcomeError       = "error"

	endReleased      = "released"
	endReleaseFailed = "release_failed"
	endLost          = "lost"
	endHandedOver    = "handed_over"

	refreshOK     = "ok"
	refreshLate   = "late"
	refreshFailed = "failed"
)

// errorType is the value of error.type for err: a short, fixed name for
// the class of the error, or "_OTHER" (the semantic conventions' fallback)
// for an error none of the classes below matches; "" for nil. The order
// matters where one error matches several: a Redlock's QuorumError is
// "quorum" whatever its nodes' errors were, and a release of unknown
// outcome is "unknown_outcome" whatever the timeout behind it.
func errorType(err error) string {
	var (
		qe   *distlock.QuorumError
		rerr redis.Error
		nerr net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, distlock.ErrInvalidArgument):
		return "invalid_argument"
	case errors.As(err, &qe):
		return "quorum"
	case errors.Is(err, distlock.ErrUnknownOutcome):
		return "unknown_outcome"
	case errors.Is(err, distlock.ErrNotReplicated):
		return "not_replicated"
	case errors.Is(err, distlock.ErrNotHeld):
		return "not_held"
	case errors.Is(err, distlock.ErrNodeTimeout):
		return "node_timeout"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &rerr):
		return "redis"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case errors.As(err, &nerr):
		return "network"
	}
	return "_OTHER"
}

// lossCauses maps the errors a lost lock reports to the values of
// distlock.loss.cause, first match first. distlock does not export its
// reasons yet (expired, deleted, taken over, force-released all match only
// distlock.ErrNotHeld), so every loss is "unknown" until it does; each
// reason it exports is one line here.
var lossCauses = []struct {
	err   error
	cause string
}{}

// lossCause is the value of distlock.loss.cause for the error of a lost
// lock: see lossCauses.
func lossCause(err error) string {
	for _, c := range lossCauses {
		if errors.Is(err, c.err) {
			return c.cause
		}
	}
	return "unknown"
}
