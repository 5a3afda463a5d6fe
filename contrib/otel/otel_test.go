package distlockotel_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/distlock/distlock"
	distlockotel "github.com/distlock/distlock/contrib/otel"
)

const (
	mObtain   = "distlock.lock.obtain.duration"
	mAttempts = "distlock.lock.obtain.attempts"
	mHeld     = "distlock.lock.held"
	mHold     = "distlock.lock.hold.duration"
	mRefresh  = "distlock.lock.refreshes"
	mLosses   = "distlock.lock.losses"
	mNodes    = "distlock.redlock.node.attempts"
)

// A lock that was contended once, then obtained, refreshed on time, late,
// and once with an error, then released: each event lands in its metric
// with its outcome, and makes the obtain and hold spans with their bounds.
func TestObtainRefreshRelease(t *testing.T) {
	r := newRig(t)
	const wait, held = 30 * time.Millisecond, 2 * time.Second
	for _, e := range []distlock.Event{
		{Kind: distlock.EventContended, Key: "job", Attempts: 1, Node: -1},
		{Kind: distlock.EventObtained, Key: "job", Attempts: 2, Wait: wait, Fence: 7, Node: -1},
	} {
		r.obs.Observe(e)
	}
	m := r.metrics(t)
	if got := m.sum(t, mHeld, attrs("distlock.redlock=false")); got != 1 {
		t.Errorf("held after obtain = %d, want 1", got)
	}
	for _, e := range []distlock.Event{
		{Kind: distlock.EventRefreshed, Key: "job", Node: -1},
		{Kind: distlock.EventRefreshed, Key: "job", Late: true, Node: -1},
		{Kind: distlock.EventRefreshFailed, Key: "job", Err: os.ErrDeadlineExceeded, Node: -1},
		{Kind: distlock.EventReleased, Key: "job", Held: held, Node: -1},
	} {
		r.obs.Observe(e)
	}

	m = r.metrics(t)
	units := map[string]string{mObtain: "s", mAttempts: "{attempt}", mHeld: "{lock}", mHold: "s", mRefresh: "{refresh}"}
	for name, want := range units {
		if got := m.unit(t, name); got != want {
			t.Errorf("%s unit %q, want %q", name, got, want)
		}
	}
	if _, monotonic := m.sums(t, mHeld); monotonic {
		t.Errorf("%s is monotonic, want an up-down counter", mHeld)
	}
	tests := []struct {
		name string
		set  []string
		want int64
	}{
		{mAttempts, []string{"distlock.redlock=false", "distlock.attempt.outcome=contended"}, 1},
		{mAttempts, []string{"distlock.redlock=false", "distlock.attempt.outcome=obtained"}, 1},
		{mHeld, []string{"distlock.redlock=false"}, 0},
		{mRefresh, []string{"distlock.redlock=false", "distlock.refresh.outcome=ok"}, 1},
		{mRefresh, []string{"distlock.redlock=false", "distlock.refresh.outcome=late"}, 1},
		{mRefresh, []string{"distlock.redlock=false", "distlock.refresh.outcome=failed", "error.type=timeout"}, 1},
	}
	for _, tt := range tests {
		if got := m.sum(t, tt.name, attrs(tt.set...)); got != tt.want {
			t.Errorf("%s%v = %d, want %d", tt.name, tt.set, got, tt.want)
		}
	}
	if n := m.points(t, mAttempts); n != 2 {
		t.Errorf("%s has %d data points, want 2", mAttempts, n)
	}
	if n := m.points(t, mRefresh); n != 3 {
		t.Errorf("%s has %d data points, want 3", mRefresh, n)
	}
	if c, s := m.hist(t, mObtain, attrs("distlock.redlock=false", "distlock.obtain.outcome=obtained")); c != 1 || s != wait.Seconds() {
		t.Errorf("%s obtained: count %d sum %v, want 1 and %v", mObtain, c, s, wait.Seconds())
	}
	if c, s := m.hist(t, mHold, attrs("distlock.redlock=false", "distlock.lock.end=released")); c != 1 || s != held.Seconds() {
		t.Errorf("%s released: count %d sum %v, want 1 and %v", mHold, c, s, held.Seconds())
	}
	if n := m.points(t, mLosses); n != 0 {
		t.Errorf("%s has %d data points, want none", mLosses, n)
	}

	spans := r.spans.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (obtain, hold)", len(spans))
	}
	obtain, hold := spans[0], spans[1]
	if obtain.Name() != "distlock.obtain" || hold.Name() != "distlock.hold" {
		t.Fatalf("spans %q, %q; want distlock.obtain, distlock.hold", obtain.Name(), hold.Name())
	}
	if d := obtain.EndTime().Sub(obtain.StartTime()); d != wait {
		t.Errorf("obtain span lasts %v, want the wait %v", d, wait)
	}
	wantSpanAttrs(t, obtain, "distlock.redlock=false", "distlock.lock.key=job", "distlock.obtain.outcome=obtained",
		"distlock.obtain.attempts=2", "distlock.lock.fence=7")
	if d := hold.EndTime().Sub(hold.StartTime()); d != held {
		t.Errorf("hold span lasts %v, want the hold %v", d, held)
	}
	wantSpanAttrs(t, hold, "distlock.redlock=false", "distlock.lock.key=job", "distlock.lock.end=released")
	for _, s := range spans {
		if s.Status().Code != codes.Unset {
			t.Errorf("span %s status %v, want unset", s.Name(), s.Status())
		}
		if s.Parent().IsValid() {
			t.Errorf("span %s has a parent; an Event carries no context, so it must be a root", s.Name())
		}
	}
}

// A call that gives up because the key stayed held is not an error; one
// that fails with an error counts an error attempt (when it made one) and
// marks its span; a ctx that ended while the key was held is not_obtained.
func TestNotObtainedAndErrors(t *testing.T) {
	r := newRig(t)
	quorum := &distlock.QuorumError{Op: "obtain", Nodes: 3, Quorum: 2, OK: 1,
		Errors: []*distlock.NodeError{{Node: 2, Err: distlock.ErrNodeTimeout}}}
	ctxEnded := fmt.Errorf("obtain %q: %w", "k", errors.Join(distlock.ErrNotObtained, context.DeadlineExceeded))
	for _, e := range []distlock.Event{
		// Held by another, no retry.
		{Kind: distlock.EventContended, Key: "k", Attempts: 1, Node: -1},
		{Kind: distlock.EventNotObtained, Key: "k", Attempts: 1, Wait: time.Millisecond, Err: fmt.Errorf("obtain %q: %w", "k", distlock.ErrNotObtained), Node: -1},
		// Blocked until ctx ended.
		{Kind: distlock.EventContended, Key: "k", Attempts: 1, Node: -1},
		{Kind: distlock.EventNotObtained, Key: "k", Attempts: 1, Wait: 50 * time.Millisecond, Err: ctxEnded, Node: -1},
		// A Redlock with two nodes down.
		{Kind: distlock.EventNotObtained, Key: "k", Redlock: true, Attempts: 1, Wait: 100 * time.Millisecond, Err: quorum, Node: -1},
		// Bad input: no attempt was made.
		{Kind: distlock.EventNotObtained, Key: "", Err: fmt.Errorf("%w: empty key", distlock.ErrInvalidArgument), Node: -1},
	} {
		r.obs.Observe(e)
	}
	m := r.metrics(t)
	wantSum := time.Millisecond.Seconds() + (50 * time.Millisecond).Seconds() // added in the SDK's order
	if c, s := m.hist(t, mObtain, attrs("distlock.redlock=false", "distlock.obtain.outcome=not_obtained")); c != 2 || s != wantSum {
		t.Errorf("not_obtained: count %d sum %v, want 2 and %v", c, s, wantSum)
	}
	if c, _ := m.hist(t, mObtain, attrs("distlock.redlock=true", "distlock.obtain.outcome=error", "error.type=quorum")); c != 1 {
		t.Errorf("quorum error: count %d, want 1", c)
	}
	if c, _ := m.hist(t, mObtain, attrs("distlock.redlock=false", "distlock.obtain.outcome=error", "error.type=invalid_argument")); c != 1 {
		t.Errorf("invalid argument: count %d, want 1", c)
	}
	if got := m.sum(t, mAttempts, attrs("distlock.redlock=false", "distlock.attempt.outcome=contended")); got != 2 {
		t.Errorf("contended attempts %d, want 2", got)
	}
	if got := m.sum(t, mAttempts, attrs("distlock.redlock=true", "distlock.attempt.outcome=error", "error.type=quorum")); got != 1 {
		t.Errorf("Redlock error attempts %d, want 1", got)
	}
	if n := m.points(t, mAttempts); n != 2 {
		t.Errorf("%s has %d data points, want 2 (contended, the Redlock's error; none for bad input)", mAttempts, n)
	}
	if n := m.points(t, mHeld); n != 0 {
		t.Errorf("%s has %d data points; nothing was held", mHeld, n)
	}

	spans := r.spans.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4 obtain spans", len(spans))
	}
	for i, want := range []codes.Code{codes.Unset, codes.Unset, codes.Error, codes.Error} {
		if got := spans[i].Status().Code; got != want {
			t.Errorf("span %d status %v, want %v", i, spans[i].Status(), want)
		}
	}
	wantSpanAttrs(t, spans[1], "distlock.redlock=false", "distlock.lock.key=k", "distlock.obtain.outcome=not_obtained", "distlock.obtain.attempts=1")
	wantSpanAttrs(t, spans[2], "distlock.redlock=true", "distlock.lock.key=k", "distlock.obtain.outcome=error",
		"distlock.obtain.attempts=1", "error.type=quorum")
	if desc := spans[2].Status().Description; desc != quorum.Error() {
		t.Errorf("error span description %q, want the error %q", desc, quorum.Error())
	}
	wantSpanAttrs(t, spans[3], "distlock.redlock=false", "distlock.obtain.outcome=error", "distlock.obtain.attempts=0", "error.type=invalid_argument")
}

// Every way a hold ends takes the held count down by one, whatever the
// order of the locks: obtained, released, released with an error, lost,
// handed over (the receiver's obtain takes it up again).
func TestHeldCountsEveryEnd(t *testing.T) {
	r := newRig(t)
	held := func() int64 { return r.metrics(t).sum(t, mHeld, attrs("distlock.redlock=false")) }
	obtained := distlock.Event{Kind: distlock.EventObtained, Key: "k", Attempts: 1, Node: -1}
	lostErr := fmt.Errorf("lock %q: %w", "k", distlock.ErrExpired)
	steps := []struct {
		give distlock.Event
		want int64
	}{
		{obtained, 1},
		{obtained, 2},
		{obtained, 3},
		{distlock.Event{Kind: distlock.EventReleased, Key: "k", Held: time.Second, Node: -1}, 2},
		{distlock.Event{Kind: distlock.EventLost, Key: "k", Held: time.Second, Err: lostErr, Node: -1}, 1},
		{distlock.Event{Kind: distlock.EventHandedOver, Key: "k", Held: time.Second, Node: -1}, 0},
		{obtained, 1}, // the caller the lock was handed to
		{distlock.Event{Kind: distlock.EventReleased, Key: "k", Held: time.Second, Node: -1,
			Err: fmt.Errorf("release: %w: %w", distlock.ErrUnknownOutcome, os.ErrDeadlineExceeded)}, 0},
	}
	for i, st := range steps {
		r.obs.Observe(st.give)
		if got := held(); got != st.want {
			t.Fatalf("step %d (%v): held %d, want %d", i, st.give.Kind, got, st.want)
		}
	}
	m := r.metrics(t)
	for _, tt := range []struct {
		set  []string
		want uint64
	}{
		{[]string{"distlock.redlock=false", "distlock.lock.end=released"}, 1},
		{[]string{"distlock.redlock=false", "distlock.lock.end=lost", "distlock.loss.cause=expired"}, 1},
		{[]string{"distlock.redlock=false", "distlock.lock.end=handed_over"}, 1},
		{[]string{"distlock.redlock=false", "distlock.lock.end=release_failed", "error.type=unknown_outcome"}, 1},
	} {
		if c, _ := m.hist(t, mHold, attrs(tt.set...)); c != tt.want {
			t.Errorf("%s%v count %d, want %d", mHold, tt.set, c, tt.want)
		}
	}
	if got := m.sum(t, mLosses, attrs("distlock.redlock=false", "distlock.loss.cause=expired")); got != 1 {
		t.Errorf("losses %d, want 1", got)
	}
	var failed []string
	for _, s := range r.spans.Ended() {
		if s.Name() != "distlock.hold" {
			continue
		}
		end, _ := spanAttr(s, "distlock.lock.end")
		if s.Status().Code == codes.Error {
			failed = append(failed, end.AsString())
			if s.Status().Description == "" {
				t.Errorf("hold span ending %s: error status without a description", end.AsString())
			}
		}
	}
	if strings.Join(failed, ",") != "lost,release_failed" {
		t.Errorf("hold spans with error status: %v, want lost and release_failed", failed)
	}
}

// A Redlock's per-node outcomes are counted per node index; its locks say
// distlock.redlock=true.
func TestRedlockNodes(t *testing.T) {
	r := newRig(t)
	for _, e := range []distlock.Event{
		{Kind: distlock.EventNode, Key: "k", Redlock: true, Node: 0},
		{Kind: distlock.EventNode, Key: "k", Redlock: true, Node: 1, Err: distlock.ErrNotObtained},
		{Kind: distlock.EventNode, Key: "k", Redlock: true, Node: 2, Err: &distlock.NodeError{Node: 2, Addr: "127.0.0.1:1", Err: distlock.ErrNodeTimeout}},
		{Kind: distlock.EventNode, Key: "k", Redlock: true, Node: 0},
		{Kind: distlock.EventObtained, Key: "k", Redlock: true, Attempts: 2, Node: -1},
	} {
		r.obs.Observe(e)
	}
	m := r.metrics(t)
	for _, tt := range []struct {
		set  []string
		want int64
	}{
		{[]string{"distlock.redlock.node=0", "distlock.attempt.outcome=obtained"}, 2},
		{[]string{"distlock.redlock.node=1", "distlock.attempt.outcome=contended"}, 1},
		{[]string{"distlock.redlock.node=2", "distlock.attempt.outcome=error", "error.type=node_timeout"}, 1},
	} {
		if got := m.sum(t, mNodes, attrs(tt.set...)); got != tt.want {
			t.Errorf("%s%v = %d, want %d", mNodes, tt.set, got, tt.want)
		}
	}
	if n := m.points(t, mNodes); n != 3 {
		t.Errorf("%s has %d data points, want 3", mNodes, n)
	}
	if got := m.sum(t, mHeld, attrs("distlock.redlock=true")); got != 1 {
		t.Errorf("Redlock locks held %d, want 1", got)
	}
}

// By default metrics carry no key and spans the key as it is;
// WithKeyAttribute puts its name for the key on both, and leaves the
// attribute off where it returns "".
func TestKeyAttribute(t *testing.T) {
	obtained := func(key string) distlock.Event {
		return distlock.Event{Kind: distlock.EventObtained, Key: key, Attempts: 1, Node: -1}
	}
	t.Run("default", func(t *testing.T) {
		r := newRig(t)
		r.obs.Observe(obtained("pay:42:1001"))
		r.obs.Observe(obtained("pay:43:1002"))
		m := r.metrics(t)
		if got := m.sum(t, mHeld, attrs("distlock.redlock=false")); got != 2 {
			t.Errorf("held without key %d, want 2 (one series for every key)", got)
		}
		for i, s := range r.spans.Ended() {
			if v, _ := spanAttr(s, "distlock.lock.key"); v.AsString() != []string{"pay:42:1001", "pay:43:1002"}[i] {
				t.Errorf("span %d key %q", i, v.AsString())
			}
		}
	})
	t.Run("named", func(t *testing.T) {
		r := newRig(t, distlockotel.WithKeyAttribute(func(key string) string {
			if kind, _, ok := strings.Cut(key, ":"); ok {
				return kind
			}
			return ""
		}))
		r.obs.Observe(obtained("pay:42:1001"))
		r.obs.Observe(obtained("pay:43:1002"))
		r.obs.Observe(obtained("plain"))
		m := r.metrics(t)
		if got := m.sum(t, mHeld, attrs("distlock.redlock=false", "distlock.lock.key=pay")); got != 2 {
			t.Errorf("held with key=pay %d, want 2", got)
		}
		if got := m.sum(t, mHeld, attrs("distlock.redlock=false")); got != 1 {
			t.Errorf("held without key %d, want 1 (the key the name left off)", got)
		}
		if c, _ := m.hist(t, mObtain, attrs("distlock.redlock=false", "distlock.obtain.outcome=obtained", "distlock.lock.key=pay")); c != 2 {
			t.Errorf("obtain duration with key=pay: count %d, want 2", c)
		}
		spans := r.spans.Ended()
		for i, want := range []string{"pay", "pay", ""} {
			v, ok := spanAttr(spans[i], "distlock.lock.key")
			if v.AsString() != want || ok != (want != "") {
				t.Errorf("span %d key %q (present %v), want %q", i, v.AsString(), ok, want)
			}
		}
	})
}

func TestErrorType(t *testing.T) {
	tests := []struct {
		give error
		want string
	}{
		{fmt.Errorf("%w: ttl", distlock.ErrInvalidArgument), "invalid_argument"},
		{&distlock.QuorumError{Op: "obtain", Errors: []*distlock.NodeError{{Err: distlock.ErrNodeTimeout}}}, "quorum"},
		{fmt.Errorf("release: %w: %w", distlock.ErrUnknownOutcome, context.DeadlineExceeded), "unknown_outcome"},
		{&distlock.ReplicationError{Acked: 0, Wanted: 1}, "not_replicated"},
		{fmt.Errorf("refresh: %w", distlock.ErrNotHeld), "not_held"},
		{&distlock.NodeError{Err: distlock.ErrNodeTimeout}, "node_timeout"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "deadline_exceeded"},
		{context.Canceled, "canceled"},
		{os.ErrDeadlineExceeded, "timeout"},
		{errors.New("something else"), "_OTHER"},
	}
	for _, tt := range tests {
		r := newRig(t)
		r.obs.Observe(distlock.Event{Kind: distlock.EventRefreshFailed, Key: "k", Err: tt.give, Node: -1})
		set := attrs("distlock.redlock=false", "distlock.refresh.outcome=failed", "error.type="+tt.want)
		if got := r.metrics(t).sum(t, mRefresh, set); got != 1 {
			t.Errorf("%v: no failed refresh with error.type=%s", tt.give, tt.want)
		}
	}
}

// Observe is called from many goroutines at once (callers and
// auto-refreshers), some of them with attribute sets not seen before:
// counts add up and the held count comes back to 0.
func TestConcurrentObserve(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprint("keyed=", keyed), func(t *testing.T) {
			var opts []distlockotel.Option
			if keyed {
				opts = append(opts, distlockotel.WithKeyAttribute(func(key string) string { return key }))
			}
			r := newRig(t, opts...)
			const goroutines, cycles = 8, 500
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					redlock := g%2 == 0
					for i := range cycles {
						key := fmt.Sprint("k", i%40)
						r.obs.Observe(distlock.Event{Kind: distlock.EventObtained, Key: key, Redlock: redlock, Attempts: 1, Node: -1})
						r.obs.Observe(distlock.Event{Kind: distlock.EventRefreshed, Key: key, Redlock: redlock, Node: -1})
						r.obs.Observe(distlock.Event{Kind: distlock.EventReleased, Key: key, Redlock: redlock, Node: -1})
					}
				}()
			}
			wg.Wait()
			m := r.metrics(t)
			for _, redlock := range []string{"false", "true"} {
				if got := m.sumWhere(t, mHeld, "distlock.redlock="+redlock); got != 0 {
					t.Errorf("redlock=%s: held %d, want 0", redlock, got)
				}
				if got := m.sumWhere(t, mAttempts, "distlock.redlock="+redlock, "distlock.attempt.outcome=obtained"); got != goroutines/2*cycles {
					t.Errorf("redlock=%s: obtained %d, want %d", redlock, got, goroutines/2*cycles)
				}
			}
			wantSeries := 2
			if keyed {
				wantSeries = 2 * 40
			}
			if n := m.points(t, mHeld); n != wantSeries {
				t.Errorf("%d held series, want %d", n, wantSeries)
			}
			if n := len(r.spans.Ended()); n != 2*goroutines*cycles {
				t.Errorf("%d spans, want %d", n, 2*goroutines*cycles)
			}
		})
	}
}

// Spans are made only with WithTracerProvider: not through the global
// TracerProvider by default, not with a nil one, and not when the
// provider samples nothing.
func TestSpansOnlyWhenAsked(t *testing.T) {
	r := newRig(t)
	global := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans)))
	t.Cleanup(func() { otel.SetTracerProvider(global) })
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(r.spans))
	t.Cleanup(func() { _ = never.Shutdown(context.Background()) })
	for _, opts := range [][]distlockotel.Option{
		nil,
		{distlockotel.WithTracerProvider(nil)},
		{distlockotel.WithTracerProvider(never)},
	} {
		obs, err := distlockotel.New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		obs.Observe(distlock.Event{Kind: distlock.EventObtained, Key: "k", Attempts: 1, Node: -1})
		obs.Observe(distlock.Event{Kind: distlock.EventReleased, Key: "k", Node: -1})
	}
	if n := len(r.spans.Ended()); n != 0 {
		t.Errorf("%d spans recorded, want 0", n)
	}
	// The same events through the global provider, asked for, make spans:
	// the check above could see them.
	obs, err := distlockotel.New(distlockotel.WithTracerProvider(otel.GetTracerProvider()))
	if err != nil {
		t.Fatal(err)
	}
	obs.Observe(distlock.Event{Kind: distlock.EventObtained, Key: "k", Attempts: 1, Node: -1})
	if n := len(r.spans.Ended()); n != 1 {
		t.Errorf("%d spans through the global provider, want 1", n)
	}
}

// Two Observers on one MeterProvider (say one per Locker) report the sum
// of their counts, as one would.
func TestTwoObserversOneProvider(t *testing.T) {
	r := newRig(t)
	second, err := distlockotel.New(distlockotel.WithMeterProvider(r.mp))
	if err != nil {
		t.Fatal(err)
	}
	obtained := distlock.Event{Kind: distlock.EventObtained, Key: "k", Attempts: 1, Node: -1}
	r.obs.Observe(obtained)
	second.Observe(obtained)
	second.Observe(distlock.Event{Kind: distlock.EventContended, Key: "k", Attempts: 1, Node: -1})
	m := r.metrics(t)
	if got := m.sum(t, mHeld, attrs("distlock.redlock=false")); got != 2 {
		t.Errorf("held %d, want 2", got)
	}
	if got := m.sum(t, mAttempts, attrs("distlock.redlock=false", "distlock.attempt.outcome=obtained")); got != 2 {
		t.Errorf("obtained %d, want 2", got)
	}
	if got := m.sum(t, mAttempts, attrs("distlock.redlock=false", "distlock.attempt.outcome=contended")); got != 1 {
		t.Errorf("contended %d, want 1", got)
	}
	if c, _ := m.hist(t, mObtain, attrs("distlock.redlock=false", "distlock.obtain.outcome=obtained")); c != 2 {
		t.Errorf("obtain durations %d, want 2", c)
	}
}

// A key name of unbounded variety does not grow the Observer without
// bound: past its limit of attribute sets, new sets fold into one marked
// otel.metric.overflow=true, and no count is lost.
func TestKeyAttributeOverflow(t *testing.T) {
	r := newRig(t, distlockotel.WithKeyAttribute(func(key string) string { return key }))
	const keys = 3000
	for i := range keys {
		r.obs.Observe(distlock.Event{Kind: distlock.EventObtained, Key: fmt.Sprint("order:", i), Attempts: 1, Node: -1})
	}
	m := r.metrics(t)
	sums, _ := m.sums(t, mHeld)
	var total int64
	for _, v := range sums {
		total += v
	}
	if total != keys {
		t.Errorf("held %d in all, want %d", total, keys)
	}
	if got := m.sum(t, mHeld, attrs("otel.metric.overflow=true")); got == 0 || got == keys {
		t.Errorf("held in the overflow set: %d, want some but not all of %d", got, keys)
	}
	if len(sums) >= keys {
		t.Errorf("%d held series for %d keys: the sets were not bounded", len(sums), keys)
	}
}
