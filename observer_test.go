package distlock_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// eventLog records the events of several observers in the order they
// arrive, each under the name of its observer.
type eventLog struct {
	mu     sync.Mutex
	events []namedEvent
	added  chan struct{} // closed (and replaced) on every event
}

type namedEvent struct {
	who string
	e   distlock.Event
}

func newEventLog() *eventLog { return &eventLog{added: make(chan struct{})} }

// observer returns an Observer that records into g under the name who.
func (g *eventLog) observer(who string) distlock.Observer {
	return distlock.ObserverFunc(func(e distlock.Event) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.events = append(g.events, namedEvent{who, e})
		close(g.added)
		g.added = make(chan struct{})
	})
}

// of returns the events that who observed, in order.
func (g *eventLog) of(who string) []distlock.Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []distlock.Event
	for _, ne := range g.events {
		if ne.who == who {
			out = append(out, ne.e)
		}
	}
	return out
}

// all returns every event as "who kind", in order.
func (g *eventLog) all() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, len(g.events))
	for i, ne := range g.events {
		out[i] = ne.who + " " + ne.e.Kind.String()
	}
	return out
}

// waitFor waits until who has observed an event of kind and returns who's
// events so far.
func (g *eventLog) waitFor(t *testing.T, who string, kind distlock.EventKind) []distlock.Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		g.mu.Lock()
		added := g.added
		g.mu.Unlock()
		events := g.of(who)
		for _, e := range events {
			if e.Kind == kind {
				return events
			}
		}
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("%s observed no %v within %v; it observed %v", who, kind, waitTimeout, kinds(events))
		}
	}
}

// kinds returns the kinds of events, by name (readable in a failure).
func kinds(events []distlock.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Kind.String()
	}
	return out
}

// names returns the names of ks.
func names(ks ...distlock.EventKind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.String()
	}
	return out
}

// assertLockEvent checks the fields every event of a lock has.
func assertLockEvent(t *testing.T, e distlock.Event, key string, redlock bool) {
	t.Helper()
	assert.Equal(t, key, e.Key, "%v: key", e.Kind)
	assert.Equal(t, redlock, e.Redlock, "%v: redlock", e.Kind)
	if e.Kind != distlock.EventNode {
		assert.Equal(t, -1, e.Node, "%v: node", e.Kind)
	}
}

// TestObserverObtainRefreshRelease: an Obtain, a Refresh and a Release are
// observed as obtained, refreshed, released, with the call's wait, attempt
// count and fence, and the hold time; a second Release reports nothing.
func TestObserverObtainRefreshRelease(t *testing.T) {
	modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
		ctx := context.Background()
		log := newEventLog()
		lk := distlock.New(srv.Client(t), append(opts, distlock.WithObserver(log.observer("lk")))...)
		start := time.Now()
		l, err := lk.Obtain(ctx, "obs", distlock.WithTTL(10*time.Second), distlock.WithFencing())
		require.NoError(t, err)
		require.NoError(t, l.Refresh(ctx, 0))
		require.NoError(t, l.Release(ctx))
		require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)
		took := time.Since(start)

		ev := log.of("lk")
		require.Equal(t, names(distlock.EventObtained, distlock.EventRefreshed, distlock.EventReleased), kinds(ev))
		for _, e := range ev {
			assertLockEvent(t, e, "obs", false)
		}
		obtained, refreshed, released := ev[0], ev[1], ev[2]
		assert.Equal(t, 1, obtained.Attempts)
		assert.Equal(t, l.Fence(), obtained.Fence)
		assert.Positive(t, obtained.Fence)
		assert.Positive(t, obtained.Wait)
		assert.LessOrEqual(t, obtained.Wait, took)
		assert.NoError(t, obtained.Err)
		assert.False(t, refreshed.Late, "a refresh right after obtaining is not late")
		assert.NoError(t, released.Err)
		assert.Positive(t, released.Held)
		assert.LessOrEqual(t, released.Held, took)
	})
}

// TestObserverLateRefresh: a refresh that lands in the last third of the
// lock's validity is reported late; one early in it is not.
func TestObserverLateRefresh(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	log := newEventLog()
	lk := distlock.New(srv.Client(t), distlock.WithObserver(log.observer("lk")))
	const ttl = 3 * time.Second // validity 2.968s: the last third starts 989ms before its end
	l, err := lk.Obtain(ctx, "late", distlock.WithTTL(ttl))
	require.NoError(t, err)
	require.NoError(t, l.Refresh(ctx, 0))
	// Wait until 800ms before the end of the validity (the time passing is
	// what is tested), and refresh: it lands in the last third.
	<-time.After(time.Until(l.ValidUntil().Add(-800 * time.Millisecond)))
	require.NoError(t, l.Refresh(ctx, 0))
	require.NoError(t, l.Release(ctx))

	ev := log.of("lk")
	require.Equal(t, names(distlock.EventObtained, distlock.EventRefreshed, distlock.EventRefreshed, distlock.EventReleased), kinds(ev))
	assert.False(t, ev[1].Late, "the refresh right after obtaining")
	assert.True(t, ev[2].Late, "the refresh 800ms before the end of the validity")
}

// TestObserverContention: a caller that finds the key held sees one
// contended event per attempt, then not_obtained with the error Obtain
// returned (matching ErrNotObtained) and the number of attempts.
func TestObserverContention(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	holder := distlock.New(srv.Client(t))
	l, err := holder.Obtain(ctx, "busy", distlock.WithTTL(10*time.Second))
	require.NoError(t, err)
	defer l.Release(ctx)

	log := newEventLog()
	other := distlock.New(srv.Client(t), distlock.WithObserver(log.observer("other")))
	_, err = other.Obtain(ctx, "busy")
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	ev := log.of("other")
	require.Equal(t, names(distlock.EventContended, distlock.EventNotObtained), kinds(ev))
	for _, e := range ev {
		assertLockEvent(t, e, "busy", false)
		assert.Equal(t, 1, e.Attempts, "%v", e.Kind)
	}
	assert.Equal(t, err, ev[1].Err, "not_obtained carries the error Obtain returned")

	// With two retries 5ms apart: three attempts.
	log = newEventLog()
	start := time.Now()
	_, err = other.Obtain(ctx, "busy", distlock.WithRetry(distlock.LimitRetry(distlock.LinearBackoff(5*time.Millisecond), 2)),
		distlock.WithObserver(log.observer("retrying")))
	took := time.Since(start)
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	ev = log.of("retrying")
	require.Equal(t, names(distlock.EventContended, distlock.EventContended, distlock.EventContended, distlock.EventNotObtained), kinds(ev))
	for i, want := range []int{1, 2, 3, 3} {
		assert.Equal(t, want, ev[i].Attempts, "event %d (%v)", i, ev[i].Kind)
	}
	assert.GreaterOrEqual(t, ev[3].Wait, 10*time.Millisecond, "two pauses of 5ms")
	assert.LessOrEqual(t, ev[3].Wait, took)
	assert.Equal(t, err, ev[3].Err)
}

// TestObserverRedisErrors: with Redis gone, an Obtain reports not_obtained
// with the Redis error (no contention), a Refresh refresh_failed (the lock
// is still held), and a Release released with its error.
func TestObserverRedisErrors(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	log := newEventLog()
	lk := distlock.New(srv.Client(t, func(o *redis.Options) { o.MaxRetries = -1 }), distlock.WithObserver(log.observer("lk")))
	l, err := lk.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	srv.Kill(t)

	_, obtainErr := lk.Obtain(ctx, "other")
	require.Error(t, obtainErr)
	refreshErr := l.Refresh(ctx, 0)
	require.Error(t, refreshErr)
	require.NoError(t, l.Err(), "still held until ValidUntil")
	releaseErr := l.Release(ctx)
	require.Error(t, releaseErr)

	ev := log.of("lk")
	require.Equal(t, names(distlock.EventObtained, distlock.EventNotObtained, distlock.EventRefreshFailed, distlock.EventReleased), kinds(ev))
	notObtained, refreshFailed, released := ev[1], ev[2], ev[3]
	assert.Equal(t, "other", notObtained.Key)
	assert.Equal(t, 1, notObtained.Attempts)
	assert.Equal(t, obtainErr, notObtained.Err)
	assert.NotErrorIs(t, notObtained.Err, distlock.ErrNotObtained)
	require.Error(t, refreshFailed.Err)
	assert.ErrorIs(t, refreshErr, refreshFailed.Err, "refresh_failed carries the cause of Refresh's error")
	assert.NotErrorIs(t, refreshFailed.Err, distlock.ErrNotHeld)
	require.Error(t, released.Err)
	assert.ErrorIs(t, releaseErr, released.Err, "released carries the cause of Release's error")
}

// TestObserverHandOver: a blocked waiter of the same Locker is observed
// contending, then obtaining the lock its holder hands over; the holder's
// end is reported as handed_over (not released), before the waiter's
// obtained. The waiter's observer is its call's own.
func TestObserverHandOver(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	log := newEventLog()
	// Barging: the hand-over inside a Locker, delivered after the
	// releaser's script answered (TestFairHandOverObserved: in turn).
	lk := distlock.New(srv.Client(t), barging, distlock.WithObserver(log.observer("holder")))
	h, err := lk.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	// No fallback re-check within the test: the waiter stays parked.
	got := obtainAsync(ctx, lk, "k", distlock.WithTTL(time.Minute), distlock.WithRetry(distlock.LinearBackoff(time.Minute)),
		distlock.WithObserver(log.observer("waiter")))
	require.Eventually(t, func() bool { return distlock.Parked(lk, "k") }, waitTimeout, time.Millisecond)
	require.NoError(t, h.Release(ctx))
	w := waitObtained(t, got).l
	require.NoError(t, w.Release(ctx))

	hev := log.of("holder")
	require.Equal(t, names(distlock.EventObtained, distlock.EventHandedOver), kinds(hev), "holder")
	assert.NoError(t, hev[1].Err)
	assert.Positive(t, hev[1].Held)
	wev := log.of("waiter")
	require.GreaterOrEqual(t, len(wev), 3, "waiter: %v", kinds(wev))
	n := len(wev) - 2 // contended attempts: before and after subscribing
	for i, e := range wev[:n] {
		assertLockEvent(t, e, "k", false)
		assert.Equal(t, distlock.EventContended, e.Kind, "waiter event %d", i)
		assert.Equal(t, i+1, e.Attempts, "waiter event %d", i)
	}
	assert.Equal(t, distlock.EventObtained, wev[n].Kind)
	assert.Equal(t, n, wev[n].Attempts, "a hand-over is not an attempt of the waiter")
	assert.Equal(t, distlock.EventReleased, wev[n+1].Kind)

	all := log.all()
	assert.Less(t, indexOf(all, "holder handed_over"), indexOf(all, "waiter obtained"), "order: %v", all)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestObserverLoss: a key deleted behind an auto-refreshed holder's back
// is reported lost (cause matching ErrNotHeld, as Err says) at the next
// refresh, once; the Release after it reports nothing more. The same for
// Do, whose lock is lost while fn runs.
func TestObserverLoss(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	log := newEventLog()
	lk := distlock.New(srv.Client(t), distlock.WithObserver(log.observer("lk")))

	l, err := lk.Obtain(ctx, "lose", distlock.WithTTL(time.Second), distlock.WithAutoRefresh())
	require.NoError(t, err)
	srv.Exec(t, "DEL", rlKey("lose"))
	waitClosed(t, l.Done(), waitTimeout, "Done after the key was deleted")
	ev := log.waitFor(t, "lk", distlock.EventLost)
	require.ErrorIs(t, l.Release(ctx), distlock.ErrNotHeld)
	assert.Len(t, log.of("lk"), len(ev), "events after the loss: %v", kinds(log.of("lk")))
	assertLost(t, ev, l.Err(), "lose")

	log = newEventLog()
	err = lk.Do(ctx, "lose-in-do", func(ctx context.Context) error {
		srv.Exec(t, "DEL", rlKey("lose-in-do"))
		<-ctx.Done()
		return nil
	}, distlock.WithTTL(time.Second), distlock.WithObserver(log.observer("do")))
	require.ErrorIs(t, err, distlock.ErrNotHeld)
	ev = log.of("do")
	var cause error
	if len(ev) > 0 {
		cause = ev[len(ev)-1].Err
	}
	assertLost(t, ev, cause, "lose-in-do")
	assert.ErrorIs(t, err, cause, "Do's error wraps the cause the event reported")
}

// assertLost checks events of a lock that was obtained, maybe refreshed,
// and lost with cause.
func assertLost(t *testing.T, ev []distlock.Event, cause error, key string) {
	t.Helper()
	require.GreaterOrEqual(t, len(ev), 2, "%v", kinds(ev))
	assert.Equal(t, distlock.EventObtained, ev[0].Kind)
	for _, e := range ev[1 : len(ev)-1] {
		assert.Equal(t, distlock.EventRefreshed, e.Kind, "between obtained and lost: %v", kinds(ev))
	}
	lost := ev[len(ev)-1]
	assertLockEvent(t, lost, key, false)
	require.Equal(t, distlock.EventLost, lost.Kind)
	assert.ErrorIs(t, lost.Err, distlock.ErrNotHeld)
	assert.Equal(t, cause, lost.Err)
	assert.Positive(t, lost.Held)
}

// TestObserverRedlockNodeDown: a Redlock over 3 nodes, one of them
// stopped, reports each node's answer to the attempt (the stopped one's a
// *NodeError), then obtained; a second caller sees the key held on the two
// live nodes, contended, and not_obtained.
func TestObserverRedlockNodeDown(t *testing.T) {
	rlModes(t, 3, func(t *testing.T, srvs []*redistest.Server, mode distlock.Option) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		srvs[2].Stop(t)
		log := newEventLog()
		rl := newRL(t, srvs, mode, distlock.WithObserver(log.observer("rl")))
		l, err := rl.Obtain(ctx, "rl", distlock.WithTTL(10*time.Second))
		require.NoError(t, err)

		other := newRL(t, srvs, mode)
		_, otherErr := other.Obtain(ctx, "rl", distlock.WithObserver(log.observer("other")))
		require.ErrorIs(t, otherErr, distlock.ErrNotObtained)
		require.NoError(t, l.Release(ctx))

		ev := log.of("rl")
		require.Equal(t, names(distlock.EventNode, distlock.EventNode, distlock.EventNode, distlock.EventObtained, distlock.EventReleased), kinds(ev))
		for i, e := range ev {
			assertLockEvent(t, e, "rl", true)
			if i < 3 {
				assert.Equal(t, i, e.Node)
			}
		}
		assert.NoError(t, ev[0].Err, "node 0")
		assert.NoError(t, ev[1].Err, "node 1")
		var ne *distlock.NodeError
		require.ErrorAs(t, ev[2].Err, &ne, "node 2 (stopped)")
		assert.Equal(t, 2, ne.Node)
		assert.Equal(t, 1, ev[3].Attempts)
		assert.NoError(t, ev[4].Err)

		ev = log.of("other")
		require.Equal(t, names(distlock.EventNode, distlock.EventNode, distlock.EventNode, distlock.EventContended, distlock.EventNotObtained), kinds(ev))
		assert.ErrorIs(t, ev[0].Err, distlock.ErrNotObtained, "node 0 is held")
		assert.ErrorIs(t, ev[1].Err, distlock.ErrNotObtained, "node 1 is held")
		assert.Error(t, ev[2].Err, "node 2 (stopped)")
		assert.NotErrorIs(t, ev[2].Err, distlock.ErrNotObtained, "node 2 (stopped)")
		assert.Equal(t, otherErr, ev[4].Err)
	})
}

// TestObserverPerCall: an observer given to a call replaces the default of
// New for that call and for the Lock it obtains; WithObserver(nil) turns
// observing off for the call.
func TestObserverPerCall(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	log := newEventLog()
	lk := distlock.New(srv.Client(t), distlock.WithObserver(log.observer("default")))
	for _, c := range []struct {
		key string
		opt distlock.Option
	}{
		{"a", distlock.WithObserver(log.observer("call"))},
		{"b", distlock.WithObserver(nil)},
		{"c", nil},
	} {
		l, err := lk.Obtain(ctx, c.key, c.opt)
		require.NoError(t, err)
		require.NoError(t, l.Refresh(ctx, 0))
		require.NoError(t, l.Release(ctx))
	}
	assert.Equal(t, []string{
		"call obtained", "call refreshed", "call released",
		"default obtained", "default refreshed", "default released",
	}, log.all())
	for _, e := range log.of("call") {
		assert.Equal(t, "a", e.Key)
	}
	for _, e := range log.of("default") {
		assert.Equal(t, "c", e.Key)
	}
}

// TestObserverNilCostsNothing: an obtain+release cycle allocates as much
// with WithObserver(nil) as without, and a per-call WithObserver(nil) on a
// Locker with a default observer as much as a Locker without one. (An
// equality of allocation counts, not a timing.)
func TestObserverNilCostsNothing(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client(t)
	cycle := func(lk *distlock.Locker, opts ...distlock.Option) float64 {
		return testing.AllocsPerRun(200, func() {
			l, err := lk.Obtain(ctx, "allocs", opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Plain calls: the autopipeliner's batching varies with timing.
	plain := distlock.New(client, distlock.WithPipelining(false))
	nilDefault := distlock.New(client, distlock.WithPipelining(false), distlock.WithObserver(nil))
	observed := distlock.New(client, distlock.WithPipelining(false), distlock.WithObserver(distlock.ObserverFunc(func(distlock.Event) {
		t.Error("observed although the call turned observing off")
	})))
	off := distlock.WithObserver(nil)
	none := distlock.WithTTL(distlock.DefaultTTL) // as many per-call options

	base := cycle(plain, none)
	assert.Equal(t, base, cycle(nilDefault, none), "WithObserver(nil) on New")
	assert.Equal(t, base, cycle(plain, off), "WithObserver(nil) on the call")
	assert.Equal(t, base, cycle(observed, off), "WithObserver(nil) on the call, over a default observer")
	t.Logf("%v allocations per obtain+release", base)
}

// TestSlogObserverLevels: SlogObserver logs contention and outcomes at
// Debug, losses at Warn, failed calls at Error, with the key and never the
// token.
func TestSlogObserverLevels(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	h := newRecordHandler()
	lk := distlock.New(srv.Client(t, func(o *redis.Options) { o.MaxRetries = -1 }),
		distlock.WithObserver(distlock.SlogObserver(slog.New(h))))

	l, err := lk.Obtain(ctx, "k", distlock.WithTTL(time.Second), distlock.WithAutoRefresh())
	require.NoError(t, err)
	_, err = lk.Obtain(ctx, "k")
	require.ErrorIs(t, err, distlock.ErrNotObtained)
	srv.Exec(t, "DEL", rlKey("k"))
	waitClosed(t, l.Done(), waitTimeout, "Done after the key was deleted")
	h.waitFor(t, "distlock lost")
	_ = l.Release(ctx)
	srv.Kill(t)
	_, err = lk.Obtain(ctx, "k2")
	require.Error(t, err)

	var got []string
	for _, r := range h.all() {
		if r.msg != "distlock refreshed" { // as many as the timing allows
			got = append(got, r.level.String()+" "+r.msg+" key="+r.attrs["key"])
		}
		for k, v := range r.attrs {
			assert.NotContains(t, v, l.Token(), "%s: attribute %s", r.msg, k)
		}
	}
	assert.Equal(t, []string{
		"DEBUG distlock obtained key=k",
		"DEBUG distlock contended key=k",
		"DEBUG distlock not_obtained key=k",
		"WARN distlock lost key=k",
		"ERROR distlock not_obtained key=k2",
	}, got)
}

// recordHandler is a slog.Handler that keeps every record.
type recordHandler struct {
	mu      sync.Mutex
	records []logRecord
	added   chan struct{} // closed (and replaced) on every record
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newRecordHandler() *recordHandler { return &recordHandler{added: make(chan struct{})} }

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, rec)
	close(h.added)
	h.added = make(chan struct{})
	return nil
}

func (h *recordHandler) all() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logRecord(nil), h.records...)
}

// waitFor waits until a record with message msg was logged.
func (h *recordHandler) waitFor(t *testing.T, msg string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		h.mu.Lock()
		added := h.added
		h.mu.Unlock()
		for _, r := range h.all() {
			if r.msg == msg {
				return
			}
		}
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("no %q logged within %v", msg, waitTimeout)
		}
	}
}

// TestObserverRecipes: Do, Once, ClaimTick and Lead report through the same
// events as Obtain. A finished tick claim is reported released at Finish,
// and its lock's expiry at the end of the window, by design, is not
// reported as a loss.
func TestObserverRecipes(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	log := newEventLog()
	lk := distlock.New(srv.Client(t), distlock.WithObserver(log.observer("lk")))
	nop := func(context.Context) error { return nil }
	type want struct {
		who   string
		kinds []string
	}
	obtainedReleased := names(distlock.EventObtained, distlock.EventReleased)

	require.NoError(t, lk.Do(ctx, "do", nop, distlock.WithObserver(log.observer("do"))))
	require.NoError(t, lk.Once(ctx, "once", time.Minute, nop, distlock.WithObserver(log.observer("once"))))
	require.ErrorIs(t, lk.Once(ctx, "once", time.Minute, nop, distlock.WithObserver(log.observer("once again"))), distlock.ErrAlreadyDone)
	require.NoError(t, lk.Lead(ctx, "lead", nop, distlock.WithObserver(log.observer("lead"))))
	claim, err := lk.ClaimTick(ctx, "tick", 400*time.Millisecond, distlock.WithObserver(log.observer("tick")))
	require.NoError(t, err)
	require.NoError(t, claim.Finish(ctx))
	// The lock ends at the end of the window (Err says it expired): the
	// events must not call that a loss.
	waitClosed(t, claim.Lock().Done(), waitTimeout, "the finished claim's lock at the end of its window")
	require.ErrorIs(t, claim.Lock().Err(), distlock.ErrNotHeld)

	for _, w := range []want{
		{"do", obtainedReleased},
		{"once", obtainedReleased},
		{"once again", names(distlock.EventNotObtained)},
		{"lead", obtainedReleased},
		{"tick", names(distlock.EventObtained, distlock.EventRefreshed, distlock.EventReleased)},
	} {
		assert.Equal(t, w.kinds, kinds(log.of(w.who)), w.who)
	}
	if ev := log.of("once again"); len(ev) == 1 {
		assert.ErrorIs(t, ev[0].Err, distlock.ErrAlreadyDone)
		assert.Equal(t, 1, ev[0].Attempts)
	}
	assert.Empty(t, log.of("lk"), "a call's own observer replaces the default")
}
