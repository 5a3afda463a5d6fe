package distlockotel

import (
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// An Option configures New.
type Option interface {
	apply(*config)
}

type config struct {
	mp      metric.MeterProvider // nil: otel.GetMeterProvider()
	tp      trace.TracerProvider // nil: no spans
	keyAttr func(string) string  // nil: no key on metrics, the key on spans
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithMeterProvider records the metrics through mp. Default: the global
// MeterProvider (otel.GetMeterProvider) as it is when New is called, which
// records nothing until the application sets one. A nil mp keeps the
// default.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithTracerProvider makes spans through tp (see Spans in the package
// doc); otel.GetTracerProvider() is the global one. Default: no spans,
// because an Event carries no context: the spans cannot join the caller's
// trace, and each lock would start two traces of its own, which a sampler
// that keeps every root span (the SDK's default) keeps at a cost. A nil tp
// makes no spans.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithKeyAttribute sets the attribute distlock.lock.key, on metrics and on
// spans, to name(key), where key is the lock's key as the caller gave it;
// an empty name leaves the attribute off that event's metrics and spans.
//
// Default (no WithKeyAttribute, or a nil name): metrics carry no key, spans
// carry the key as it is. Metrics are kept per attribute set for the whole
// life of the process, so a key of unbounded variety (a user or an order
// id) on a metric grows the SDK's memory with every new key until its
// cardinality limit folds the rest into one overflow series. name should
// therefore map keys to a few names, e.g. cut "pay:{user}:{order}" to
// "pay". A span is its own record, so the whole key on it costs nothing
// lasting; a name that is set replaces it there too, so that keys that must
// not be exported (they hold personal data) can be hashed or cut for both.
//
// The Observer keeps each attribute set it has used, with or without a
// name: up to 2000 of them, past which new sets fold into one per metric
// with otel.metric.overflow=true (as the SDK does past its cardinality
// limit), so a name of unbounded variety costs bounded memory but loses the
// key. name is called once per event; it must be quick and safe for
// concurrent use.
func WithKeyAttribute(name func(key string) string) Option {
	return optionFunc(func(c *config) { c.keyAttr = name })
}
