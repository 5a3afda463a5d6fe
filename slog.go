package distlock

import (
	"context"
	"errors"
	"log/slog"
)

// SlogObserver returns an Observer that logs every Event to logger (nil:
// slog.Default() at the time of each event), one record per event, with
// the message "distlock " and the kind ("distlock obtained", "distlock
// lost", …, see EventKind.String) and the attributes the kind sets: key,
// redlock (only when true), attempts, wait, held, fence (only when not 0),
// late, node, err. The key is logged as the caller gave it; the token never
// is (no Event carries it).
//
// Levels:
//   - Debug: what happens in normal operation: obtained, contended,
//     not_obtained because the key was held (Err matching ErrNotObtained,
//     also when ctx ended while waiting) or the work was done (Once:
//     ErrAlreadyDone), refreshed in time, released, handed_over, and a
//     Redlock node that took the key or found it held.
//   - Warn: what threatens a lock: lost, refresh_failed, refreshed late, and
//     a Redlock node that failed (the call may still have succeeded on a
//     quorum).
//   - Error: a call that failed: not_obtained because of an error (Redis,
//     a QuorumError of failing nodes, ErrNotReplicated), and released with
//     an error (ErrUnknownOutcome, a Redis error).
//
// Records below the handler's level cost no more than the handler's Enabled
// check. A service that logs at Info sees only the Warn and Error records.
func SlogObserver(logger *slog.Logger) Observer {
	return slogObserver{logger}
}

type slogObserver struct{ logger *slog.Logger }

// Observe implements Observer.
func (s slogObserver) Observe(e Event) {
	logger := s.logger
	if logger == nil {
		logger = slog.Default()
	}
	ctx := context.Background()
	level := slogLevel(e)
	if !logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("key", e.Key))
	if e.Redlock {
		attrs = append(attrs, slog.Bool("redlock", true))
	}
	switch e.Kind {
	case EventObtained, EventNotObtained:
		attrs = append(attrs, slog.Int("attempts", e.Attempts), slog.Duration("wait", e.Wait))
		if e.Fence != 0 {
			attrs = append(attrs, slog.Int64("fence", e.Fence))
		}
	case EventContended:
		attrs = append(attrs, slog.Int("attempts", e.Attempts))
	case EventRefreshed:
		attrs = append(attrs, slog.Bool("late", e.Late))
	case EventLost, EventReleased, EventHandedOver:
		attrs = append(attrs, slog.Duration("held", e.Held))
	case EventNode:
		attrs = append(attrs, slog.Int("node", e.Node))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	logger.LogAttrs(ctx, level, "distlock "+e.Kind.String(), attrs...)
}

// slogLevel is the level SlogObserver logs e at (see SlogObserver).
func slogLevel(e Event) slog.Level {
	switch e.Kind {
	case EventLost, EventRefreshFailed:
		return slog.LevelWarn
	case EventRefreshed:
		if e.Late {
			return slog.LevelWarn
		}
	case EventNotObtained:
		if e.Err != nil && !errors.Is(e.Err, ErrNotObtained) && !errors.Is(e.Err, ErrAlreadyDone) {
			return slog.LevelError
		}
	case EventReleased:
		if e.Err != nil {
			return slog.LevelError
		}
	case EventNode:
		if e.Err != nil && !errors.Is(e.Err, ErrNotObtained) {
			return slog.LevelWarn
		}
	}
	return slog.LevelDebug
}
