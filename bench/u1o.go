package main

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/distlock/distlock"
	distlockotel "github.com/distlock/distlock/contrib/otel"
)

// U1O: the cost of observing every lock with OpenTelemetry.
const (
	u1oGoroutines   = 50
	subjOursOtel    = "distlock WithObserver(distlockotel)"
	subjOursOtelAll = "distlock WithObserver(distlockotel, every span)"
)

// u1oReps is the number of repeats of U1O: more than the other rows', as
// its ratios are near 1 and the machine's noise is not.
func (b *bench) u1oReps() int { return 2*b.reps - 1 }

// runU1O measures U1's uncontended obtain+release at 50 goroutines with
// distlock plain and with the contrib/otel Observer, interleaved, in two
// set-ups that record into the OpenTelemetry SDK as an application would,
// minus the network: the Observer as New makes it by default (metrics
// only), through a MeterProvider whose reader collects once, at the end,
// to check the counts; and the same with spans, through a TracerProvider
// that samples every span and hands it to a batch span processor whose
// exporter drops it. A cycle makes five measurements, and two spans in the
// second set-up.
func (b *bench) runU1O(ctx context.Context, srv *server) error {
	b.logf("U1O: uncontended obtain+release at %d goroutines, without and with the OpenTelemetry observer, %d repeats of %v",
		u1oGoroutines, b.u1oReps(), b.window)
	readers := map[string]*sdkmetric.ManualReader{}
	obs := map[string]distlock.Observer{}
	for _, name := range []string{subjOursOtel, subjOursOtelAll} {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		defer func() { _ = mp.Shutdown(context.WithoutCancel(ctx)) }()
		opts := []distlockotel.Option{distlockotel.WithMeterProvider(mp)}
		if name == subjOursOtelAll {
			spans := sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter())
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(spans))
			defer func() { _ = tp.Shutdown(context.WithoutCancel(ctx)) }()
			opts = append(opts, distlockotel.WithTracerProvider(tp))
		}
		o, err := distlockotel.New(opts...)
		if err != nil {
			return fmt.Errorf("U1O: %w", err)
		}
		readers[name], obs[name] = reader, o
	}
	order := []string{subjOurs, subjOursOtel, subjOursOtelAll}
	cyclers := map[string]cycler{}
	for _, name := range order {
		c := newClient(srv)
		defer c.Close()
		opts := []distlock.Option{distlock.WithTTL(lockTTL)}
		if obs[name] != nil {
			opts = append(opts, distlock.WithObserver(obs[name]))
		}
		cyclers[name] = oursCycler(distlock.New(c, opts...))
	}
	set := b.set(fmt.Sprintf("U1O/%d", u1oGoroutines))
	cycles := map[string]int64{}
	for _, name := range order {
		r := runCycles(ctx, cyclers[name], "u1owarm:"+name, u1oGoroutines, b.warmup, false)
		if r.errs > 0 {
			return fmt.Errorf("U1O warm-up %s: %w", name, r.firstErr)
		}
		cycles[name] += r.cycles
	}
	for rep := 0; rep < b.u1oReps(); rep++ {
		rates := map[string]float64{}
		for _, name := range interleave(order, rep) {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := runCycles(ctx, cyclers[name], fmt.Sprintf("u1o:%d", rep), u1oGoroutines, b.window, false)
			if r.errs > 0 {
				b.fail("U1O %s: %d errors, first: %v", name, r.errs, r.firstErr)
			}
			if r.cycles == 0 {
				b.fail("U1O %s: no cycle completed", name)
				continue
			}
			cycles[name] += r.cycles
			rates[name] = r.rate()
			set.add(name, "rate", r.rate())
			b.logf("  U1O %2d goroutines  %-48s %9.0f cycles/s", u1oGoroutines, name, r.rate())
		}
		// The ratio of runs next to each other in time: the machine's
		// load moves slower than a repeat, so pairs cancel most of it.
		for _, name := range order[1:] {
			if rates[name] > 0 && rates[subjOurs] > 0 {
				set.add(name, "paired", rates[name]/rates[subjOurs])
			}
		}
	}
	// The observers must have recorded every cycle, or the comparison
	// measured nothing. A call that timed out may have obtained without
	// completing a cycle, so obtains are at least the cycles.
	for name, reader := range readers {
		obtained, held, err := u1oCounts(ctx, reader)
		if err != nil {
			return fmt.Errorf("U1O: %w", err)
		}
		if obtained < cycles[name] || held != 0 {
			b.fail("U1O %s: the observer recorded %d obtains and %d locks still held after %d cycles", name, obtained, held, cycles[name])
		}
	}
	return nil
}

// u1oCounts collects the obtained attempts and the held locks the
// observer recorded.
func u1oCounts(ctx context.Context, reader *sdkmetric.ManualReader) (obtained, held int64, err error) {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return 0, 0, err
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				switch m.Name {
				case "distlock.lock.obtain.attempts":
					if v, _ := dp.Attributes.Value(attribute.Key("distlock.attempt.outcome")); v.AsString() == "obtained" {
						obtained += dp.Value
					}
				case "distlock.lock.held":
					held += dp.Value
				}
			}
		}
	}
	return obtained, held, nil
}
