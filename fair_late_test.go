package distlock_test

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// Late and lost news of turns: a message or a reply that comes after the
// Locker learnt of a newer turn, a message that a broken subscription lost,
// a reply lost after Redis acted. Each of these tests failed before the
// fix its comment names.

// TestFairRepeatedValueGetsNewTurnTokens: a turn's token is derived from
// the releaser's stored value, which repeats for a holder that re-obtains
// with its own token (WithToken, same owner). Its release adds a fresh
// nonce, so that two of its releases give a waiting entry two tokens.
// Before, the second turn had the first one's token, was taken for a
// duplicate of it, and went to nobody: the lock stayed until its TTL.
func TestFairRepeatedValueGetsNewTurnTokens(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := distlock.New(srv.Client(t))
	w := distlock.New(srv.Client(t), fair)

	l, err := p.Obtain(ctx, "k", distlock.WithToken("fixed"), distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	got := obtainAsync(ctx, w, "k", distlock.WithTTL(time.Minute))
	waitQueued(t, admin, "k", 1)
	require.NoError(t, l.Release(ctx)) // turn 1 to w's entry
	o := waitObtained(t, got)
	first := distlock.StoredValue(o.l)
	require.NoError(t, o.l.Release(ctx)) // w's entry lingers, the lock is freed

	// The same holder, the same stored value, again.
	l, err = p.Obtain(ctx, "k", distlock.WithToken("fixed"), distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	got = obtainAsync(ctx, w, "k", distlock.WithTTL(time.Minute))
	time.Sleep(300 * time.Millisecond) // w's caller is in its room, its entry queued
	require.NoError(t, l.Release(ctx)) // turn 2: the same token as turn 1
	require.NotEqual(t, first, rlGet(t, srv, rlKey("k")), "turn 2 has a token of its own")
	select {
	case o := <-got:
		require.NoError(t, o.err)
		require.NoError(t, o.l.Release(ctx))
	case <-time.After(5 * time.Second):
		t.Fatalf("the second turn went to nobody: lock %q stays until its TTL (%v)",
			rlGet(t, srv, rlKey("k")), admin.PTTL(ctx, rlKey("k")).Val())
	}
}

// slowSub is a dialer whose subscription connections can be made slow:
// while held, what the server sends on them reaches the client only once
// the test lets it (a pub/sub connection stalled by TCP retransmissions,
// or a reader goroutine that is not scheduled, while the command
// connections work). Nothing is lost or reordered.
type slowSub struct {
	mu      sync.Mutex
	holding bool
	open    chan struct{}
	// getGate, when set, holds back the reply to the next pipeline that is
	// only "GET getKey" (the manager's look for unheard turns, fair.go
	// sweep): the server has run it, the client reads the reply late.
	getKey  string
	getGate chan struct{}
	getSeen chan struct{}
}

func (s *slowSub) hold() {
	s.mu.Lock()
	s.holding, s.open = true, make(chan struct{})
	s.mu.Unlock()
}

func (s *slowSub) let() {
	s.mu.Lock()
	if s.holding {
		s.holding = false
		close(s.open)
	}
	s.mu.Unlock()
}

func (s *slowSub) gate() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.holding {
		return nil
	}
	return s.open
}

func (s *slowSub) options(o *redis.Options) {
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &slowConn{Conn: c, s: s}, nil
	}
}

type slowConn struct {
	net.Conn
	s       *slowSub
	pubsub  atomic.Bool
	getHeld chan struct{} // set by Write for the next Read
}

func (c *slowConn) Write(b []byte) (int, error) {
	lb := bytes.ToLower(b)
	if i := bytes.Index(lb, []byte("\r\n$9\r\nsubscribe\r\n")); i >= 0 && i < 8 {
		c.pubsub.Store(true)
	}
	c.s.mu.Lock()
	if c.s.getGate != nil && c.s.getKey != "" &&
		bytes.Equal(b, []byte("*2\r\n$3\r\nget\r\n$"+strconv.Itoa(len(c.s.getKey))+"\r\n"+c.s.getKey+"\r\n")) {
		c.getHeld = c.s.getGate
		c.s.getKey = ""
		close(c.s.getSeen)
	}
	c.s.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *slowConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.pubsub.Load() {
		if g := c.s.gate(); g != nil {
			<-g
		}
	}
	if g := c.getHeld; g != nil && n > 0 {
		c.getHeld = nil
		<-g
	}
	return n, err
}

// TestFairLateTurnMessagesAfterAdoptions: turn messages that arrive after
// the turns were adopted (the subscription was slow, not broken): two
// callers of one Locker adopt turns tA1 and tA2 one after the other, then
// both messages arrive. Neither is a new turn. Before, the entry
// remembered only its last token: tA1's message no longer matched it and
// was handed to a third caller as a new turn, and tA2 then to a fourth,
// while the second held it.
func TestFairLateTurnMessagesAfterAdoptions(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &slowSub{}
	defer s.let()
	h := distlock.New(srv.Client(t))
	w := distlock.New(srv.Client(t, s.options), fair)
	opts := []distlock.Option{distlock.WithTTL(time.Minute), distlock.WithRetry(distlock.LinearBackoff(50 * time.Millisecond))}

	hl, err := h.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	var got [4]<-chan obtained
	got[0] = obtainAsync(ctx, w, "k", opts...)
	waitQueued(t, admin, "k", 1)
	for i := 1; i < 4; i++ {
		time.Sleep(20 * time.Millisecond)
		got[i] = obtainAsync(ctx, w, "k", opts...)
	}
	time.Sleep(100 * time.Millisecond)

	s.hold() // the subscription is slow from now on
	require.NoError(t, hl.Release(ctx))
	o1 := waitObtained(t, got[0]) // adopts tA1 at a re-check
	tA1 := distlock.StoredValue(o1.l)
	require.NoError(t, o1.l.Release(ctx)) // hands tA2 to w's entry (its own next caller)
	o2 := waitObtained(t, got[1])         // adopts tA2
	tA2 := distlock.StoredValue(o2.l)
	require.Equal(t, tA2, rlGet(t, srv, rlKey("k")))
	require.NotEqual(t, tA1, tA2)
	t.Logf("o2 holds %q", tA2)

	s.let() // the messages of tA1 and tA2 arrive, late
	for i := 2; i < 4; i++ {
		select {
		case o := <-got[i]:
			require.NoError(t, o.err)
			v := distlock.StoredValue(o.l)
			t.Errorf("caller %d obtained %q while o2 holds %q (current value %q); same as o2's: %v",
				i+1, v, tA2, rlGet(t, srv, rlKey("k")), v == tA2)
		case <-time.After(2 * time.Second):
		}
	}
}

// TestFairLateSweepReplyAfterANewerTurn: the look for unheard turns after
// a resubscribe reads the lock; its reply comes late, after a newer turn
// was heard and taken. The old value it read is not a new turn, and the
// newer one stays taken. Before, the sweep overwrote the entry's one
// remembered token with the old value, and the next head adopted the
// newer turn while another caller held it.
func TestFairLateSweepReplyAfterANewerTurn(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &slowSub{}
	h := distlock.New(srv.Client(t))
	w := distlock.New(srv.Client(t, s.options), fair)
	opts := []distlock.Option{distlock.WithTTL(time.Minute), distlock.WithRetry(distlock.LinearBackoff(50 * time.Millisecond))}

	hl, err := h.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	got := obtainAsync(ctx, w, "k", opts...)
	waitQueued(t, admin, "k", 1)
	require.NoError(t, hl.Release(ctx))
	c := waitObtained(t, got) // by its turn's message: w's entry lingers
	tC := distlock.StoredValue(c.l)

	gate := make(chan struct{})
	s.mu.Lock()
	s.getKey, s.getGate, s.getSeen = rlKey("k"), gate, make(chan struct{})
	seen := s.getSeen
	s.mu.Unlock()
	_, err = admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	require.NoError(t, err)
	waitClosed(t, seen, waitTimeout, "the sweep read the lock")
	require.Eventually(t, func() bool { return wakeChannels(t, admin, "k") >= 2 }, waitTimeout, time.Millisecond,
		"the subscription is back")

	d := obtainAsync(ctx, w, "k", opts...)
	time.Sleep(30 * time.Millisecond)
	e := obtainAsync(ctx, w, "k", opts...)
	time.Sleep(30 * time.Millisecond)
	require.NoError(t, c.l.Release(ctx)) // hands tC2 to w's entry: d gets it by message
	od := waitObtained(t, d)
	tC2 := distlock.StoredValue(od.l)
	require.NotEqual(t, tC, tC2)
	require.Equal(t, tC2, rlGet(t, srv, rlKey("k")))
	time.Sleep(150 * time.Millisecond) // e re-checks: code 2 with tC2, a duplicate

	close(gate) // the sweep's reply (tC) arrives
	select {
	case oe := <-e:
		require.NoError(t, oe.err)
		t.Errorf("e obtained %q while d holds %q (current value %q)", distlock.StoredValue(oe.l), tC2, rlGet(t, srv, rlKey("k")))
	case <-time.After(2 * time.Second):
	}
}

// TestFairLostTurnOfALeftEntryAcrossAResubscribe: a turn handed to an
// entry just before it left, whose message is lost as the subscription
// breaks, is found once the subscription is back and given back. Before,
// only the entries still queued were looked at: the lock stayed with
// nobody until its TTL.
func TestFairLostTurnOfALeftEntryAcrossAResubscribe(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.Set(ctx, rlKey("k"), "holder", time.Minute).Err())
	w := distlock.New(srv.Client(t), fair)
	wctx, wcancel := context.WithCancel(ctx)
	left := obtainAsync(wctx, w, "k", distlock.WithTTL(time.Minute))
	waitQueued(t, admin, "k", 1)
	id, err := admin.LIndex(ctx, rlKey("k")+":q", 0).Result()
	require.NoError(t, err)
	wcancel()
	require.ErrorIs(t, (<-left).err, distlock.ErrNotObtained)
	waitQueued(t, admin, "k", 0) // left; still listened to for 2s

	// The turn handed to it just before it left; its message is lost.
	require.NoError(t, admin.Set(ctx, rlKey("k"), id+".lost\x00owner:"+distlock.DefaultOwner(), time.Minute).Err())
	_, err = admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	require.NoError(t, err)
	if !assert.Eventually(t, func() bool { return rlGet(t, srv, rlKey("k")) == "" }, 4*time.Second, 10*time.Millisecond) {
		t.Logf("the lost turn of the entry that left is still there 4s later, pttl %v", admin.PTTL(ctx, rlKey("k")).Val())
	}
}

// TestFairAdoptingAttemptWithLostReply: the head's attempt would have
// found a turn handed to its entry unheard (code 2), and its reply is
// lost; Obtain returns the error and the entry leaves. The Locker looks
// for the turn and gives it back. Before, nothing looked: the lock stayed
// with nobody until its TTL.
func TestFairAdoptingAttemptWithLostReply(t *testing.T) {
	queued := scriptSrc(t, "acquire_queued")
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.Set(ctx, rlKey("k"), "holder", time.Minute).Err())
	f := redistest.NewFaults(t)
	srv.Exec(t, "SCRIPT", "LOAD", queued)
	w := distlock.New(srv.Client(t, f.Options, noRetries), fair)
	got := obtainAsync(ctx, w, "k", distlock.WithTTL(time.Minute))
	waitQueued(t, admin, "k", 1)
	id, err := admin.LIndex(ctx, rlKey("k")+":q", 0).Result()
	require.NoError(t, err)
	dropped := f.DropReply(redistest.And(redistest.Script(queued), redistest.HasArg(rlKey("k"))))
	// A turn handed to the entry whose message went unheard.
	require.NoError(t, admin.Set(ctx, rlKey("k"), id+".unheard\x00owner:"+distlock.DefaultOwner(), time.Minute).Err())
	o := <-got // its re-check: code 2, reply lost
	waitClosed(t, dropped.Done(), waitTimeout, "the attempt ran")
	require.Error(t, o.err)
	waitQueued(t, admin, "k", 0)
	if !assert.Eventually(t, func() bool { return rlGet(t, srv, rlKey("k")) == "" }, 4*time.Second, 10*time.Millisecond) {
		t.Logf("the unheard turn is still there 4s later, pttl %v", admin.PTTL(ctx, rlKey("k")).Val())
	}
}

// TestFairUnheardTurnOfAnIdleEntryOnACluster:
// TestFairUnheardTurnOfAnIdleEntryIsGivenBack on a Redis Cluster, where a
// failed sharded subscription is subscribed again by the notifier's own
// back-off and a release hands turns to live entries whether anyone
// listens or not. The idle entry's channel, confirmed again, makes the
// Locker look. Before, only a plain subscription's failure did: the lock
// stayed with nobody until its TTL.
func TestFairUnheardTurnOfAnIdleEntryOnACluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	admin := cl.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	holder := distlock.New(cl.Client(t), fair)
	idle := distlock.New(cl.Client(t), fair)
	l, err := holder.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	got := obtainAsync(ctx, idle, "k", distlock.WithTTL(time.Minute))
	require.Eventually(t, func() bool { return admin.LLen(ctx, rlKey("k")+":q").Val() == 1 }, waitTimeout, time.Millisecond)
	id, err := admin.LIndex(ctx, rlKey("k")+":q", 0).Result()
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
	o := waitObtained(t, got)
	require.NoError(t, o.l.Release(ctx)) // its entry lingers, idle

	require.NoError(t, admin.Set(ctx, rlKey("k"), id+".unheard\x00owner:"+distlock.DefaultOwner(), time.Minute).Err())
	subs := func() (ids string) {
		_ = admin.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			l, _ := c.ClientList(ctx).Result()
			for _, line := range strings.Split(l, "\n") {
				if strings.Contains(line, "ssub=1") || strings.Contains(line, "ssub=2") {
					ids += strings.Fields(line)[0] + " "
				}
			}
			return nil
		})
		return ids
	}
	before := subs()
	require.NoError(t, admin.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		return c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err()
	}))
	require.Eventually(t, func() bool { s := subs(); return s != "" && s != before }, waitTimeout, 10*time.Millisecond)
	t.Logf("sharded subscribers before %q, after %q", before, subs())
	ok := assert.Eventually(t, func() bool { return admin.Get(ctx, rlKey("k")).Val() == "" }, 4*time.Second, 10*time.Millisecond)
	if !ok {
		t.Logf("still held 4s later: %q pttl %v", admin.Get(ctx, rlKey("k")).Val(), admin.PTTL(ctx, rlKey("k")).Val())
	}
}

// TestFairLostGiveBackOfAHeardTurnIsSentAgain: an idle entry hears a turn
// and gives it back; the give-back's write never reaches Redis (its
// connection dropped with the write in it). It is sent again. Before, it
// was not: the token was marked seen before it was sent, every later look
// took it for a duplicate, and the lock stayed with nobody until its TTL
// while the waiter behind waited.
func TestFairLostGiveBackOfAHeardTurnIsSentAgain(t *testing.T) {
	g := idleEntryAheadOfAWaiter(t)
	held := g.f.Hold(redistest.And(redistest.Script(g.release), redistest.HasArg(g.id)))
	require.NoError(t, g.hl.Release(g.ctx)) // a turn to w's idle entry: it gives it back
	waitClosed(t, held.Caught(), waitTimeout, "w's give-back was sent")
	g.waiterGetsTheLock(t)
}

// TestFairLostGiveBackOfASweptTurnIsSentAgain: the same for a turn found
// by the look for unheard turns after a resubscribe.
func TestFairLostGiveBackOfASweptTurnIsSentAgain(t *testing.T) {
	g := idleEntryAheadOfAWaiter(t)
	// A turn handed to w's idle entry whose message is lost.
	require.NoError(t, g.admin.Set(g.ctx, rlKey("k"), g.id+".unheard\x00owner:"+distlock.DefaultOwner(), time.Minute).Err())
	held := g.f.Hold(redistest.And(redistest.Script(g.release), redistest.HasArg(g.id)))
	_, err := g.admin.ClientKillByFilter(g.ctx, "TYPE", "pubsub").Result()
	require.NoError(t, err)
	waitClosed(t, held.Caught(), waitTimeout, "the sweep's give-back was sent")
	g.waiterGetsTheLock(t)
}

// giveBackRig: Locker w's entry for "k" lingers idle at the head of the
// queue (its caller got a turn and released it), h holds "k" again (hl),
// and Locker p waits behind w's entry (pgot). w's client runs through f,
// without retries.
type giveBackRig struct {
	ctx     context.Context
	srv     *redistest.Server
	admin   *redis.Client
	f       *redistest.Faults
	release string // release.lua as sent
	id      string // w's entry
	hl      *distlock.Lock
	pgot    <-chan obtained
}

func idleEntryAheadOfAWaiter(t *testing.T) *giveBackRig {
	g := &giveBackRig{release: scriptSrc(t, "release"), srv: redistest.Start(t)}
	g.admin = g.srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	g.ctx = ctx
	g.f = redistest.NewFaults(t)
	g.srv.Exec(t, "SCRIPT", "LOAD", g.release)
	h := distlock.New(g.srv.Client(t), fair)
	w := distlock.New(g.srv.Client(t, g.f.Options, noRetries), fair)
	p := distlock.New(g.srv.Client(t), fair)
	ttl := distlock.WithTTL(time.Minute)

	hl, err := h.Obtain(ctx, "k", ttl)
	require.NoError(t, err)
	got := obtainAsync(ctx, w, "k", ttl)
	waitQueued(t, g.admin, "k", 1)
	g.id, err = g.admin.LIndex(ctx, rlKey("k")+":q", 0).Result()
	require.NoError(t, err)
	require.NoError(t, hl.Release(ctx))
	o := waitObtained(t, got)
	require.NoError(t, o.l.Release(ctx)) // w's entry lingers, idle

	g.hl, err = h.Obtain(ctx, "k", ttl)
	require.NoError(t, err)
	g.pgot = obtainAsync(ctx, p, "k", ttl)
	waitQueued(t, g.admin, "k", 2) // [w's idle entry, p]
	return g
}

// waiterGetsTheLock checks that p gets the lock within 6s.
func (g *giveBackRig) waiterGetsTheLock(t *testing.T) {
	t.Helper()
	select {
	case po := <-g.pgot:
		require.NoError(t, po.err)
		require.NoError(t, po.l.Release(g.ctx))
	case <-time.After(6 * time.Second):
		t.Errorf("p waits behind a turn nobody holds: lock %q, pttl %v, queue %v", rlGet(t, g.srv, rlKey("k")),
			g.admin.PTTL(g.ctx, rlKey("k")).Val(), g.admin.LRange(g.ctx, rlKey("k")+":q", 0, -1).Val())
	}
}

// TestFairLostReplyLeavesTheTurnToTheRoom: the head's attempt finds an
// unheard turn of its entry (code 2) and loses its reply; another caller
// of the same room still waits on the entry and takes the turn. Before,
// the Locker looked for the turn as soon as the attempt failed, and when
// that look came first it gave the turn back passing over the entry: the
// waiter queued behind got it first.
func TestFairLostReplyLeavesTheTurnToTheRoom(t *testing.T) {
	queued := scriptSrc(t, "acquire_queued")
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.Set(ctx, rlKey("k"), "holder", time.Minute).Err())
	f := redistest.NewFaults(t)
	srv.Exec(t, "SCRIPT", "LOAD", queued)
	w := distlock.New(srv.Client(t, f.Options, noRetries), fair)
	p := distlock.New(srv.Client(t), fair)
	ttl := distlock.WithTTL(time.Minute)
	c2 := obtainAsync(ctx, w, "k", ttl)
	waitQueued(t, admin, "k", 1)
	id, err := admin.LIndex(ctx, rlKey("k")+":q", 0).Result()
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	c3 := obtainAsync(ctx, w, "k", ttl) // same room, behind c2
	pgot := obtainAsync(ctx, p, "k", ttl)
	waitQueued(t, admin, "k", 2) // [w, p]
	time.Sleep(100 * time.Millisecond)

	dropped := f.DropReply(redistest.And(redistest.Script(queued), redistest.HasArg(rlKey("k"))))
	// c3's first attempt as head is a little slower than a look for the
	// turn by the manager would be (a busier connection): 100ms.
	f.Delay(redistest.And(redistest.Script(queued), redistest.HasArg(rlKey("k"))), 100*time.Millisecond)
	require.NoError(t, admin.Set(ctx, rlKey("k"), id+".unheard\x00owner:"+distlock.DefaultOwner(), time.Minute).Err())
	o := <-c2 // its re-check: code 2, reply lost
	waitClosed(t, dropped.Done(), waitTimeout, "the attempt ran")
	require.Error(t, o.err)
	select {
	case o3 := <-c3:
		require.NoError(t, o3.err)
		t.Logf("c3 (w's room, first in the queue) got the turn: %q", distlock.StoredValue(o3.l))
		require.NoError(t, o3.l.Release(ctx))
		po := waitObtained(t, pgot)
		require.NoError(t, po.l.Release(ctx))
	case po := <-pgot:
		require.NoError(t, po.err)
		t.Errorf("p (queued behind w's entry) got the lock first while c3 waits on w's entry: %q", distlock.StoredValue(po.l))
		require.NoError(t, po.l.Release(ctx))
		o3 := waitObtained(t, c3)
		require.NoError(t, o3.l.Release(ctx))
	case <-time.After(6 * time.Second):
		t.Errorf("nobody got the lock: %q", rlGet(t, srv, rlKey("k")))
	}
}

// TestFairIdleEntryThatLeavesWakesTheWaiterBehind: the lock is freed
// without a hand-over (its holder's TTL ran out) while an idle entry of
// another Locker is first in the queue. The waiter behind it finds the
// lock free and wakes the idle entry, which leaves and wakes the waiter
// in turn. Before, the idle entry stayed for its linger (1s), then left
// without a word, and the waiter tried again only at its fallback re-check
// (0.4 to 1.5s with the lock free all that time).
func TestFairIdleEntryThatLeavesWakesTheWaiterBehind(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := distlock.New(srv.Client(t), fair)
	w := distlock.New(srv.Client(t), fair)
	p := distlock.New(srv.Client(t), fair)

	hl, err := h.Obtain(ctx, "k", distlock.WithTTL(time.Minute))
	require.NoError(t, err)
	got := obtainAsync(ctx, w, "k", distlock.WithTTL(time.Minute))
	waitQueued(t, admin, "k", 1)
	require.NoError(t, hl.Release(ctx))
	o := waitObtained(t, got)
	require.NoError(t, o.l.Release(ctx)) // w's entry lingers (1s), idle, first in the queue

	_, err = h.Obtain(ctx, "k", distlock.WithTTL(300*time.Millisecond)) // never released: expires
	require.NoError(t, err)
	expires := time.Now().Add(300 * time.Millisecond)
	pgot := obtainAsync(ctx, p, "k", distlock.WithTTL(time.Minute))
	waitQueued(t, admin, "k", 2)
	po := waitObtained(t, pgot)
	t.Logf("p obtained %v after the lock expired", po.at.Sub(expires))
	assert.Less(t, po.at.Sub(expires), 150*time.Millisecond, "the waiter behind the idle entry was not woken when it left")
	require.NoError(t, po.l.Release(ctx))
}
