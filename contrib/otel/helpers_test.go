package distlockotel_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	distlockotel "github.com/distlock/distlock/contrib/otel"
	"github.com/distlock/distlock/internal/redistest"
)

// TestMain runs the tests and then checks that no goroutine of distlock,
// go-redis or OpenTelemetry outlived them.
func TestMain(m *testing.M) {
	os.Exit(redistest.RunAndCheckLeaks(m, "go.opentelemetry.io"))
}

// rig is an Observer wired to the SDK's in-memory metric reader and span
// recorder.
type rig struct {
	obs    *distlockotel.Observer
	mp     *sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
}

func newRig(t *testing.T, opts ...distlockotel.Option) *rig {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() {
		ctx := context.Background()
		if err := mp.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := tp.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	obs, err := distlockotel.New(append([]distlockotel.Option{
		distlockotel.WithMeterProvider(mp), distlockotel.WithTracerProvider(tp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{obs: obs, mp: mp, reader: reader, spans: spans}
}

// metrics collects what the reader holds now.
func (r *rig) metrics(t *testing.T) metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	m := metrics{byName: map[string]metricdata.Metrics{}}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != distlockotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, distlockotel.ScopeName)
		}
		for _, md := range sm.Metrics {
			m.byName[md.Name] = md
		}
	}
	return m
}

type metrics struct {
	byName map[string]metricdata.Metrics
}

// attrs builds an attribute set from "name=value" pairs; a value true or
// false is a bool, a number an int.
func attrs(kvs ...string) attribute.Set {
	var out []attribute.KeyValue
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			panic("attrs: " + kv)
		}
		var n int
		switch _, err := fmt.Sscanf(v, "%d", &n); {
		case v == "true" || v == "false":
			out = append(out, attribute.Bool(k, v == "true"))
		case err == nil && fmt.Sprint(n) == v:
			out = append(out, attribute.Int(k, n))
		default:
			out = append(out, attribute.String(k, v))
		}
	}
	return attribute.NewSet(out...)
}

// unit returns the unit of metric name, failing when it was not recorded.
func (m metrics) unit(t *testing.T, name string) string {
	t.Helper()
	md, ok := m.byName[name]
	if !ok {
		t.Fatalf("metric %s not recorded; have %v", name, slices.Sorted(mapKeys(m.byName)))
	}
	return md.Unit
}

// sums returns every data point of the int64 sum name, by its attribute
// set's encoding, with whether the sum is monotonic.
func (m metrics) sums(t *testing.T, name string) (map[attribute.Distinct]int64, bool) {
	t.Helper()
	md, ok := m.byName[name]
	if !ok {
		return nil, false
	}
	sum, ok := md.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is a %T, want an int64 sum", name, md.Data)
	}
	out := map[attribute.Distinct]int64{}
	for _, dp := range sum.DataPoints {
		out[dp.Attributes.Equivalent()] = dp.Value
	}
	return out, sum.IsMonotonic
}

// sum is the value of the int64 sum name at set (0 when absent).
func (m metrics) sum(t *testing.T, name string, set attribute.Set) int64 {
	t.Helper()
	s, _ := m.sums(t, name)
	return s[set.Equivalent()]
}

// points is the number of data points of metric name.
func (m metrics) points(t *testing.T, name string) int {
	t.Helper()
	md, ok := m.byName[name]
	if !ok {
		return 0
	}
	switch d := md.Data.(type) {
	case metricdata.Sum[int64]:
		return len(d.DataPoints)
	case metricdata.Histogram[float64]:
		return len(d.DataPoints)
	}
	t.Fatalf("%s is a %T", name, md.Data)
	return 0
}

// hist returns the count and sum of the histogram name at set.
func (m metrics) hist(t *testing.T, name string, set attribute.Set) (count uint64, sum float64) {
	t.Helper()
	md, ok := m.byName[name]
	if !ok {
		return 0, 0
	}
	h, ok := md.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is a %T, want a float64 histogram", name, md.Data)
	}
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&set) {
			return dp.Count, dp.Sum
		}
	}
	return 0, 0
}

// sumWhere adds up the data points of the int64 sum name whose attributes
// include every one of subset.
func (m metrics) sumWhere(t *testing.T, name string, subset ...string) int64 {
	t.Helper()
	md, ok := m.byName[name]
	if !ok {
		return 0
	}
	want := attrs(subset...)
	var total int64
	for _, dp := range md.Data.(metricdata.Sum[int64]).DataPoints {
		if includes(dp.Attributes, want) {
			total += dp.Value
		}
	}
	return total
}

// countWhere adds up the counts of the histogram name's data points whose
// attributes include every one of subset.
func (m metrics) countWhere(t *testing.T, name string, subset ...string) uint64 {
	t.Helper()
	md, ok := m.byName[name]
	if !ok {
		return 0
	}
	want := attrs(subset...)
	var total uint64
	for _, dp := range md.Data.(metricdata.Histogram[float64]).DataPoints {
		if includes(dp.Attributes, want) {
			total += dp.Count
		}
	}
	return total
}

func includes(set, subset attribute.Set) bool {
	for _, kv := range subset.ToSlice() {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// spanAttr returns the value of attribute key on span s.
func spanAttr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// wantSpanAttrs checks that span s carries exactly the attributes want
// ("name=value" as for attrs).
func wantSpanAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want ...string) {
	t.Helper()
	got := attribute.NewSet(s.Attributes()...)
	w := attrs(want...)
	if !got.Equals(&w) {
		t.Errorf("span %s attributes:\n got %v\nwant %v", s.Name(), got.Encoded(attribute.DefaultEncoder()), w.Encoded(attribute.DefaultEncoder()))
	}
}
