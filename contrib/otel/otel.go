// Package distlockotel records OpenTelemetry metrics and spans of distlock
// locks: an Observer for distlock.WithObserver.
//
//	obs, err := distlockotel.New() // the global MeterProvider and TracerProvider
//	if err != nil { … }
//	lk := distlock.New(redisClient, distlock.WithObserver(obs))
//
// # Metrics
//
// Names follow the OpenTelemetry semantic-convention style: lowercase,
// dot-separated under the distlock namespace, durations in seconds, counts
// in annotated units ({attempt}, {lock}). Every metric but the last carries
// distlock.redlock (true for a Redlock's lock), and distlock.lock.key when
// WithKeyAttribute names the key.
//
//	distlock.lock.obtain.duration   histogram  s          an Obtain (Do, Once, …) call, from its start to the
//	                                                      lock or to giving up; distlock.obtain.outcome =
//	                                                      obtained | not_obtained | error (+ error.type)
//	distlock.lock.obtain.attempts   counter    {attempt}  distlock.attempt.outcome = obtained | contended | error
//	                                                      (+ error.type)
//	distlock.lock.held              updown     {lock}     locks held now: +1 when obtained, −1 when released,
//	                                                      lost or handed over
//	distlock.lock.hold.duration     histogram  s          from obtained to the end of the hold; distlock.lock.end =
//	                                                      released | release_failed | lost | handed_over
//	                                                      (+ distlock.loss.cause, error.type)
//	distlock.lock.refreshes         counter    {refresh}  distlock.refresh.outcome = ok | late | failed (+ error.type)
//	distlock.lock.losses            counter    {loss}     locks lost before Release; distlock.loss.cause
//	distlock.redlock.node.attempts  counter    {attempt}  one Redlock attempt on one node: distlock.redlock.node
//	                                                      (its index), distlock.attempt.outcome (+ error.type)
//
// error.type is one of invalid_argument, quorum, unknown_outcome,
// not_replicated, not_held, node_timeout, deadline_exceeded, canceled,
// redis, timeout, network, _OTHER.
//
// # Spans
//
// An Observer is told of outcomes, not of the start and end of calls, and
// an Event carries no context: so the spans are made afterwards, from the
// durations the events carry, and are roots of traces of their own (they
// cannot be children of the caller's span).
//
//   - distlock.obtain: one per Obtain (Do, Once, …) call that ends, from
//     the call's start (now − Event.Wait) to the lock or to giving up, with
//     distlock.obtain.outcome, distlock.obtain.attempts, distlock.lock.fence
//     (with fencing) and error.type; status Error when the outcome is an
//     error (not when the key was held).
//   - distlock.hold: one per held lock, from the moment it was obtained
//     (now − Event.Held) to its Release, loss or hand-over, with
//     distlock.lock.end, distlock.loss.cause and error.type; status Error
//     when lost or when Release failed. For Do this is the time fn ran.
//
// Both carry distlock.redlock and distlock.lock.key (the key itself unless
// WithKeyAttribute says otherwise).
package distlockotel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/distlock/distlock"
)

// ScopeName is the instrumentation scope of the Meter and the Tracer.
const ScopeName = "github.com/distlock/distlock/contrib/otel"

// Metric names.
const (
	metricObtainDuration = "distlock.lock.obtain.duration"
	metricAttempts       = "distlock.lock.obtain.attempts"
	metricHeld           = "distlock.lock.held"
	metricHoldDuration   = "distlock.lock.hold.duration"
	metricRefreshes      = "distlock.lock.refreshes"
	metricLosses         = "distlock.lock.losses"
	metricNodeAttempts   = "distlock.redlock.node.attempts"
)

// Span names.
const (
	spanObtain = "distlock.obtain"
	spanHold   = "distlock.hold"
)

// Histogram buckets, in seconds. An Obtain takes a round trip (well under a
// millisecond on a LAN) unless it waits, which may last as long as a hold;
// a hold lasts from a few milliseconds (a critical section) to hours (a
// leader's term).
var (
	obtainBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	holdBuckets   = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}
)

// Observer is a distlock.Observer that records OpenTelemetry metrics and
// spans (see the package doc). Make one with New; it is safe for concurrent
// use, and one Observer may serve any number of Lockers and Redlocks.
type Observer struct {
	keyAttr func(string) string
	tracer  trace.Tracer

	obtainDuration metric.Float64Histogram
	attempts       metric.Int64Counter
	held           metric.Int64UpDownCounter
	holdDuration   metric.Float64Histogram
	refreshes      metric.Int64Counter
	losses         metric.Int64Counter
	nodeAttempts   metric.Int64Counter

	sets sync.Map // setKey → *measurement, the attribute sets without a key
}

var _ distlock.Observer = (*Observer)(nil)

// New returns an Observer that records through the providers the options
// name (default: the global ones). It fails only when the MeterProvider
// refuses to make an instrument.
func New(opts ...Option) (*Observer, error) {
	var c config
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&c)
		}
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	m := c.mp.Meter(ScopeName)
	o := &Observer{keyAttr: c.keyAttr, tracer: c.tp.Tracer(ScopeName)}
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	o.obtainDuration, err = m.Float64Histogram(metricObtainDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of lock obtain calls, from the call's start to the lock or to giving up."),
		metric.WithExplicitBucketBoundaries(obtainBuckets...))
	check(err)
	o.attempts, err = m.Int64Counter(metricAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Lock obtain attempts, by outcome."))
	check(err)
	o.held, err = m.Int64UpDownCounter(metricHeld, metric.WithUnit("{lock}"),
		metric.WithDescription("Locks held now."))
	check(err)
	o.holdDuration, err = m.Float64Histogram(metricHoldDuration, metric.WithUnit("s"),
		metric.WithDescription("Time locks were held, from obtained to released, lost or handed over."),
		metric.WithExplicitBucketBoundaries(holdBuckets...))
	check(err)
	o.refreshes, err = m.Int64Counter(metricRefreshes, metric.WithUnit("{refresh}"),
		metric.WithDescription("Lock refreshes, by outcome."))
	check(err)
	o.losses, err = m.Int64Counter(metricLosses, metric.WithUnit("{loss}"),
		metric.WithDescription("Locks lost before their release, by cause."))
	check(err)
	o.nodeAttempts, err = m.Int64Counter(metricNodeAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Redlock obtain attempts on each node, by outcome."))
	check(err)
	if len(errs) > 0 {
		return nil, fmt.Errorf("distlockotel: %w", errors.Join(errs...))
	}
	return o, nil
}

// Observe records e. It never blocks beyond what the SDK's Add, Record and
// span End do (none of which waits for an export).
func (o *Observer) Observe(e distlock.Event) {
	ctx := context.Background()
	// key is distlock.lock.key on metrics ("": none), spanKey on spans.
	key, spanKey := "", e.Key
	if o.keyAttr != nil {
		key = o.keyAttr(e.Key)
		spanKey = key
	}
	switch e.Kind {
	case distlock.EventObtained:
		o.attempts.Add(ctx, 1, o.set(setKey{inst: instAttempts, redlock: e.Redlock, value: outcomeObtained}, key).add...)
		o.obtainDuration.Record(ctx, e.Wait.Seconds(), o.set(setKey{inst: instObtain, redlock: e.Redlock, value: outcomeObtained}, key).rec...)
		o.held.Add(ctx, 1, o.set(setKey{inst: instHeld, redlock: e.Redlock}, key).add...)
		o.obtainSpan(e, spanKey, outcomeObtained, "")
	case distlock.EventContended:
		o.attempts.Add(ctx, 1, o.set(setKey{inst: instAttempts, redlock: e.Redlock, value: outcomeContended}, key).add...)
	case distlock.EventNotObtained:
		if errors.Is(e.Err, distlock.ErrNotObtained) {
			// The key stayed held (or ctx ended while it was): every
			// attempt was counted when it found the key held.
			o.obtainDuration.Record(ctx, e.Wait.Seconds(), o.set(setKey{inst: instObtain, redlock: e.Redlock, value: outcomeNotObtained}, key).rec...)
			o.obtainSpan(e, spanKey, outcomeNotObtained, "")
			return
		}
		et := errorType(e.Err)
		if e.Attempts > 0 {
			// The last attempt failed with the error; a call refused
			// before any attempt (bad input) made none.
			o.attempts.Add(ctx, 1, o.set(setKey{inst: instAttempts, redlock: e.Redlock, value: outcomeError, detail: et}, key).add...)
		}
		o.obtainDuration.Record(ctx, e.Wait.Seconds(), o.set(setKey{inst: instObtain, redlock: e.Redlock, value: outcomeError, detail: et}, key).rec...)
		o.obtainSpan(e, spanKey, outcomeError, et)
	case distlock.EventRefreshed:
		v := refreshOK
		if e.Late {
			v = refreshLate
		}
		o.refreshes.Add(ctx, 1, o.set(setKey{inst: instRefreshes, redlock: e.Redlock, value: v}, key).add...)
	case distlock.EventRefreshFailed:
		o.refreshes.Add(ctx, 1, o.set(setKey{inst: instRefreshes, redlock: e.Redlock, value: refreshFailed, detail: errorType(e.Err)}, key).add...)
	case distlock.EventLost:
		cause := lossCause(e.Err)
		o.losses.Add(ctx, 1, o.set(setKey{inst: instLosses, redlock: e.Redlock, value: cause}, key).add...)
		o.ended(ctx, e, key, spanKey, endLost, cause)
	case distlock.EventReleased:
		if e.Err == nil {
			o.ended(ctx, e, key, spanKey, endReleased, "")
		} else {
			o.ended(ctx, e, key, spanKey, endReleaseFailed, errorType(e.Err))
		}
	case distlock.EventHandedOver:
		o.ended(ctx, e, key, spanKey, endHandedOver, "")
	case distlock.EventNode:
		v, et := outcomeObtained, ""
		switch {
		case errors.Is(e.Err, distlock.ErrNotObtained):
			v = outcomeContended
		case e.Err != nil:
			v, et = outcomeError, errorType(e.Err)
		}
		o.nodeAttempts.Add(ctx, 1, o.set(setKey{inst: instNodeAttempts, value: v, detail: et, node: e.Node}, key).add...)
	}
}

// ended records the end of a hold: the held count goes down, the hold's
// duration is recorded and its span made. detail is the loss cause (end
// lost) or the error type (end release_failed).
func (o *Observer) ended(ctx context.Context, e distlock.Event, key, spanKey, end, detail string) {
	o.held.Add(ctx, -1, o.set(setKey{inst: instHeld, redlock: e.Redlock}, key).add...)
	o.holdDuration.Record(ctx, e.Held.Seconds(), o.set(setKey{inst: instHold, redlock: e.Redlock, value: end, detail: detail}, key).rec...)

	now := time.Now()
	_, span := o.tracer.Start(parentContext(e), spanHold, trace.WithTimestamp(now.Add(-e.Held)))
	if span.IsRecording() {
		span.SetAttributes(spanAttrs(e, spanKey, attrEnd.String(end))...)
		switch end {
		case endLost:
			span.SetAttributes(attrLossCause.String(detail))
			span.SetStatus(codes.Error, errText(e.Err))
		case endReleaseFailed:
			span.SetAttributes(attrErrorType.String(detail))
			span.SetStatus(codes.Error, errText(e.Err))
		}
	}
	span.End(trace.WithTimestamp(now))
}

// obtainSpan makes the span of an obtain call that ended with e.
func (o *Observer) obtainSpan(e distlock.Event, spanKey, outcome, errType string) {
	now := time.Now()
	_, span := o.tracer.Start(parentContext(e), spanObtain, trace.WithTimestamp(now.Add(-e.Wait)))
	if span.IsRecording() {
		span.SetAttributes(spanAttrs(e, spanKey, attrObtainOutcome.String(outcome), attrAttempts.Int(e.Attempts))...)
		if e.Fence != 0 {
			span.SetAttributes(attrFence.Int64(e.Fence))
		}
		if outcome == outcomeError {
			span.SetAttributes(attrErrorType.String(errType))
			span.SetStatus(codes.Error, errText(e.Err))
		}
	}
	span.End(trace.WithTimestamp(now))
}

// parentContext is the context a span of e starts from. An Event carries
// no context, so the spans are roots.
func parentContext(distlock.Event) context.Context { return context.Background() }

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// spanAttrs are the attributes every span of e carries (with key as
// distlock.lock.key unless it is empty), then extra.
func spanAttrs(e distlock.Event, key string, extra ...attribute.KeyValue) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 2+len(extra))
	attrs = append(attrs, attrRedlock.Bool(e.Redlock))
	if key != "" {
		attrs = append(attrs, attrKey.String(key))
	}
	return append(attrs, extra...)
}

// Instruments, for setKey.
const (
	instObtain uint8 = iota + 1
	instAttempts
	instHeld
	instHold
	instRefreshes
	instLosses
	instNodeAttempts
)

// setKey names one attribute set of one instrument (without the key):
// value is the instrument's outcome, end or cause; detail the error type
// (or the loss cause of a hold that ended lost).
type setKey struct {
	inst          uint8
	redlock       bool
	value, detail string
	node          int
}

// measurement is one attribute set as the options of Add and Record, made
// once so that recording allocates nothing.
type measurement struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

// set returns the options that record k's attributes, plus
// distlock.lock.key = key when key is not empty.
func (o *Observer) set(k setKey, key string) *measurement {
	if key == "" {
		if m, ok := o.sets.Load(k); ok {
			return m.(*measurement)
		}
	}
	attrs := k.attributes()
	if key != "" {
		attrs = append(attrs, attrKey.String(key))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	m := &measurement{add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}}
	if key == "" {
		o.sets.Store(k, m)
	}
	return m
}

// attributes are the attributes k stands for.
func (k setKey) attributes() []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if k.inst == instNodeAttempts {
		attrs = append(attrs, attrNode.Int(k.node), attrAttempt.String(k.value))
	} else {
		attrs = append(attrs, attrRedlock.Bool(k.redlock))
	}
	switch k.inst {
	case instObtain:
		attrs = append(attrs, attrObtainOutcome.String(k.value))
	case instAttempts:
		attrs = append(attrs, attrAttempt.String(k.value))
	case instHold:
		attrs = append(attrs, attrEnd.String(k.value))
		if k.value == endLost {
			attrs = append(attrs, attrLossCause.String(k.detail))
			return attrs
		}
	case instRefreshes:
		attrs = append(attrs, attrRefresh.String(k.value))
	case instLosses:
		attrs = append(attrs, attrLossCause.String(k.value))
	}
	if k.detail != "" {
		attrs = append(attrs, attrErrorType.String(k.detail))
	}
	return attrs
}
