// Package distlockotel records OpenTelemetry metrics and spans of distlock
// locks: an Observer for distlock.WithObserver.
//
//	obs, err := distlockotel.New() // metrics through the global MeterProvider
//	if err != nil { … }
//	lk := distlock.New(redisClient, distlock.WithObserver(obs))
//
// Metrics cost a few hundred nanoseconds per event and allocate nothing
// once an attribute set exists; see the U1O row of the benchmark.
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
//	                                                      (+ error.type); obtained counts a lock handed over
//	                                                      to a waiter too (events do not tell it apart)
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
// With WithTracerProvider the Observer also makes spans. An Observer is told
// of outcomes, not of the start and end of calls, and an Event carries no
// context: so the spans are made afterwards, from the durations the events
// carry, and are roots of traces of their own (they cannot be children of
// the caller's span). That is why they are off by default.
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
	"sync/atomic"
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
// use, and one Observer may serve any number of Lockers and Redlocks. It
// stays registered with its MeterProvider (whose collections read its
// counts) for as long as the provider lives, so make one and share it
// rather than one per Locker; two on one provider report the sum of their
// counts.
//
// The counters and the up-down counter are asynchronous instruments: an
// event adds to a count the Observer keeps (one atomic add), and each
// collection reads the counts. The histograms are recorded as events come.
type Observer struct {
	keyAttr func(string) string
	tracer  trace.Tracer // nil: no spans

	obtainDuration metric.Float64Histogram
	holdDuration   metric.Float64Histogram
	counters       [instCount]metric.Int64Observable // by inst; nil for the histograms

	sets setCache
}

var _ distlock.Observer = (*Observer)(nil)

// New returns an Observer that records metrics through the MeterProvider
// WithMeterProvider names (default: the global one) and, with
// WithTracerProvider, spans. It fails only when the MeterProvider refuses
// to make an instrument or to register the callback that reads the counts.
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
	m := c.mp.Meter(ScopeName)
	o := &Observer{keyAttr: c.keyAttr}
	if c.tp != nil {
		o.tracer = c.tp.Tracer(ScopeName)
	}
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
	o.holdDuration, err = m.Float64Histogram(metricHoldDuration, metric.WithUnit("s"),
		metric.WithDescription("Time locks were held, from obtained to released, lost or handed over."),
		metric.WithExplicitBucketBoundaries(holdBuckets...))
	check(err)
	counter := func(inst uint8, name, unit, desc string) {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		check(err)
		o.counters[inst] = c
	}
	counter(instAttempts, metricAttempts, "{attempt}", "Lock obtain attempts, by outcome.")
	counter(instRefreshes, metricRefreshes, "{refresh}", "Lock refreshes, by outcome.")
	counter(instLosses, metricLosses, "{loss}", "Locks lost before their release, by cause.")
	counter(instNodeAttempts, metricNodeAttempts, "{attempt}", "Redlock obtain attempts on each node, by outcome.")
	held, err := m.Int64ObservableUpDownCounter(metricHeld, metric.WithUnit("{lock}"), metric.WithDescription("Locks held now."))
	check(err)
	o.counters[instHeld] = held
	if len(errs) == 0 {
		var observables []metric.Observable
		for _, c := range o.counters {
			if c != nil {
				observables = append(observables, c)
			}
		}
		_, err = m.RegisterCallback(o.observeCounts, observables...)
		check(err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("distlockotel: %w", errors.Join(errs...))
	}
	return o, nil
}

// observeCounts reports every count the Observer keeps; the MeterProvider
// calls it at each collection.
func (o *Observer) observeCounts(_ context.Context, obs metric.Observer) error {
	for k, m := range o.sets.all() {
		if c := o.counters[k.inst]; c != nil {
			obs.ObserveInt64(c, m.n.Load(), m.obs...)
		}
	}
	return nil
}

// Observe records e. It never blocks beyond what the SDK's histogram
// Record and span End do (neither waits for an export).
func (o *Observer) Observe(e distlock.Event) {
	// key is distlock.lock.key on metrics ("": none), spanKey on spans.
	key, spanKey := "", e.Key
	if o.keyAttr != nil {
		key = o.keyAttr(e.Key)
		spanKey = key
	}
	switch e.Kind {
	case distlock.EventObtained:
		o.set(setKey{inst: instAttempts, redlock: e.Redlock, value: outcomeObtained, key: key}).n.Add(1)
		o.record(o.obtainDuration, setKey{inst: instObtain, redlock: e.Redlock, value: outcomeObtained, key: key}, e.Wait)
		o.set(setKey{inst: instHeld, redlock: e.Redlock, key: key}).n.Add(1)
		o.obtainSpan(e, spanKey, outcomeObtained, cNone)
	case distlock.EventContended:
		o.set(setKey{inst: instAttempts, redlock: e.Redlock, value: outcomeContended, key: key}).n.Add(1)
	case distlock.EventNotObtained:
		if errors.Is(e.Err, distlock.ErrNotObtained) {
			// The key stayed held (or ctx ended while it was): every
			// attempt was counted when it found the key held.
			o.record(o.obtainDuration, setKey{inst: instObtain, redlock: e.Redlock, value: outcomeNotObtained, key: key}, e.Wait)
			o.obtainSpan(e, spanKey, outcomeNotObtained, cNone)
			return
		}
		et := errorType(e.Err)
		if e.Attempts > 0 {
			// The last attempt failed with the error; a call refused
			// before any attempt (bad input) made none.
			o.set(setKey{inst: instAttempts, redlock: e.Redlock, value: outcomeError, detail: et, key: key}).n.Add(1)
		}
		o.record(o.obtainDuration, setKey{inst: instObtain, redlock: e.Redlock, value: outcomeError, detail: et, key: key}, e.Wait)
		o.obtainSpan(e, spanKey, outcomeError, et)
	case distlock.EventRefreshed:
		v := refreshOK
		if e.Late {
			v = refreshLate
		}
		o.set(setKey{inst: instRefreshes, redlock: e.Redlock, value: v, key: key}).n.Add(1)
	case distlock.EventRefreshFailed:
		o.set(setKey{inst: instRefreshes, redlock: e.Redlock, value: refreshFailed, detail: errorType(e.Err), key: key}).n.Add(1)
	case distlock.EventLost:
		cause := lossCause(e.Err)
		o.set(setKey{inst: instLosses, redlock: e.Redlock, value: cause, key: key}).n.Add(1)
		o.ended(e, key, spanKey, endLost, cause)
	case distlock.EventReleased:
		if e.Err == nil {
			o.ended(e, key, spanKey, endReleased, cNone)
		} else {
			o.ended(e, key, spanKey, endReleaseFailed, errorType(e.Err))
		}
	case distlock.EventHandedOver:
		o.ended(e, key, spanKey, endHandedOver, cNone)
	case distlock.EventNode:
		v, et := outcomeObtained, cNone
		switch {
		case errors.Is(e.Err, distlock.ErrNotObtained):
			v = outcomeContended
		case e.Err != nil:
			v, et = outcomeError, errorType(e.Err)
		}
		o.set(setKey{inst: instNodeAttempts, value: v, detail: et, node: e.Node, key: key}).n.Add(1)
	}
}

// record records d, in seconds, on the histogram h with k's attributes.
func (o *Observer) record(h metric.Float64Histogram, k setKey, d time.Duration) {
	h.Record(context.Background(), d.Seconds(), o.set(k).rec...)
}

// ended records the end of a hold: the held count goes down, the hold's
// duration is recorded and its span made. detail is the loss cause (end
// lost) or the error type (end release_failed).
func (o *Observer) ended(e distlock.Event, key, spanKey string, end, detail code) {
	o.set(setKey{inst: instHeld, redlock: e.Redlock, key: key}).n.Add(-1)
	o.record(o.holdDuration, setKey{inst: instHold, redlock: e.Redlock, value: end, detail: detail, key: key}, e.Held)
	if o.tracer == nil {
		return
	}
	now := time.Now()
	_, span := o.tracer.Start(parentContext(e), spanHold, trace.WithTimestamp(now.Add(-e.Held)))
	if span.IsRecording() {
		attrs := spanAttrs(e, spanKey, 2)
		attrs = append(attrs, attrEnd.String(end.String()))
		switch end {
		case endLost:
			attrs = append(attrs, attrLossCause.String(detail.String()))
		case endReleaseFailed:
			attrs = append(attrs, attrErrorType.String(detail.String()))
		}
		span.SetAttributes(attrs...)
		if e.Err != nil {
			span.SetStatus(codes.Error, e.Err.Error())
		}
	}
	span.End(trace.WithTimestamp(now))
}

// obtainSpan makes the span of an obtain call that ended with e.
func (o *Observer) obtainSpan(e distlock.Event, spanKey string, outcome, errType code) {
	if o.tracer == nil {
		return
	}
	now := time.Now()
	_, span := o.tracer.Start(parentContext(e), spanObtain, trace.WithTimestamp(now.Add(-e.Wait)))
	if span.IsRecording() {
		attrs := spanAttrs(e, spanKey, 4)
		attrs = append(attrs, attrObtainOutcome.String(outcome.String()), attrAttempts.Int(e.Attempts))
		if e.Fence != 0 {
			attrs = append(attrs, attrFence.Int64(e.Fence))
		}
		if outcome == outcomeError {
			attrs = append(attrs, attrErrorType.String(errType.String()))
		}
		span.SetAttributes(attrs...)
		if outcome == outcomeError {
			span.SetStatus(codes.Error, e.Err.Error())
		}
	}
	span.End(trace.WithTimestamp(now))
}

// parentContext is the context a span of e starts from. An Event carries
// no context, so the spans are roots.
func parentContext(distlock.Event) context.Context { return context.Background() }

// spanAttrs returns the attributes every span of e carries (with key as
// distlock.lock.key unless it is empty), with room for extra more.
func spanAttrs(e distlock.Event, key string, extra int) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 2+extra)
	attrs = append(attrs, attrRedlock.Bool(e.Redlock))
	if key != "" {
		attrs = append(attrs, attrKey.String(key))
	}
	return attrs
}

// Instruments, for setKey.
const (
	instObtain uint8 = iota
	instAttempts
	instHeld
	instHold
	instRefreshes
	instLosses
	instNodeAttempts
	instCount
)

// setKey names one attribute set of one instrument: value is the
// instrument's outcome, end or cause; detail the error type (or the loss
// cause of a hold that ended lost); key the distlock.lock.key ("": none).
type setKey struct {
	inst          uint8
	redlock       bool
	overflow      bool
	value, detail code
	key           string
	node          int
}

// measurement is one attribute set of one instrument: its count (for the
// counters) and its attributes as the options of Record and of an
// observation, made once so that recording allocates nothing.
type measurement struct {
	n   atomic.Int64
	rec []metric.RecordOption
	obs []metric.ObserveOption
}

// set returns the measurement of k, made on first use.
func (o *Observer) set(k setKey) *measurement { return o.sets.get(k) }

// attributes are the attributes k stands for.
func (k setKey) attributes() []attribute.KeyValue {
	if k.overflow {
		return []attribute.KeyValue{attribute.Bool("otel.metric.overflow", true)}
	}
	var attrs []attribute.KeyValue
	if k.inst == instNodeAttempts {
		attrs = append(attrs, attrNode.Int(k.node), attrAttempt.String(k.value.String()))
	} else {
		attrs = append(attrs, attrRedlock.Bool(k.redlock))
	}
	if k.key != "" {
		attrs = append(attrs, attrKey.String(k.key))
	}
	switch k.inst {
	case instObtain:
		attrs = append(attrs, attrObtainOutcome.String(k.value.String()))
	case instAttempts:
		attrs = append(attrs, attrAttempt.String(k.value.String()))
	case instHold:
		attrs = append(attrs, attrEnd.String(k.value.String()))
		if k.value == endLost {
			return append(attrs, attrLossCause.String(k.detail.String()))
		}
	case instRefreshes:
		attrs = append(attrs, attrRefresh.String(k.value.String()))
	case instLosses:
		attrs = append(attrs, attrLossCause.String(k.value.String()))
	}
	if k.detail != cNone {
		attrs = append(attrs, attrErrorType.String(k.detail.String()))
	}
	return attrs
}
