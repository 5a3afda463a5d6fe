package distlock

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Wake-ups. The release script publishes on the lock's channel
// ("<lock key>:wake"), so that blocked callers retry the moment a lock is
// released instead of polling. A notifier is its owner's shared
// subscription to one deployment: it multiplexes every channel its owner's
// waiters wait on, starts with the first of them and stops when the last
// leaves.
//
// No caller ever waits for the subscription's I/O: watch and unwatch only
// record what is wanted, and the notifier's own goroutine (its manager)
// sends the (un)subscriptions, so a slow or black-holed node delays
// nobody's Obtain beyond the caller's ctx. A waiter learns that its
// subscription is confirmed from the channel watch returns.
//
// Plain servers and Sentinel: one connection, PUBLISH and SUBSCRIBE.
//
// Redis Cluster: when every client of the owner is a *redis.ClusterClient
// (what redis.NewUniversalClient returns for several addresses), releases
// publish with SPUBLISH and waiters listen with SSUBSCRIBE, so that a
// release reaches only the key's shard (its master, and the replicas the
// master forwards it to) instead of being broadcast to every node. The
// channel shares the lock's hash slot. A sharded subscription lives on a
// node of the slot's shard, so the notifier keeps one connection per
// master that serves channels someone waits on (one SSUBSCRIBE per slot: a
// command may not span slots).
//
// It follows a slot that moves. When the server drops a subscription by
// itself (an SUNSUBSCRIBE nobody asked for: its node lost the slot to a
// failover or a reshard), answers MOVED, ASK, TRYAGAIN or CLUSTERDOWN, or
// the connection fails (or its health check), the notifier asks the client
// to reload its slot map and subscribes those channels again where the map
// says their slot lives: 10ms after the loss, then at doubling intervals up
// to maxReceiveBackoff (1s) while tries keep failing. It does not go back
// to the node that gave the slot up while the map still names it (for up
// to resubscribeBound): after a failover that node is a replica, which
// serves SSUBSCRIBE, but the new master may not forward the shard's
// messages to it yet (seen on Redis 7.0: a release lost that way). The confirmation of
// each re-subscription wakes the channel's waiters, so that they re-check:
// a release published while the subscription was down is noticed then,
// and none published after it goes unheard. The waiters are not woken
// before: their attempts would meet the outage, and a blocked Obtain
// returns the Redis error of an attempt. Bound: once the cluster has
// settled (its nodes agree where the slot lives), the subscription is back
// within resubscribeBound (2s: two tries, the first of which may still use
// a slot map loaded before the cluster settled) plus the client's reload
// of the map (go-redis reloads at most every 200ms); a waiter's own
// fallback re-check (WithRetry's delay, at most 2s with WithBlocking
// alone) comes first when it is sooner.
//
// A server without sharded pub/sub (before Redis 7.0) answers SSUBSCRIBE
// with an unknown-command error: the notifier then subscribes with
// SUBSCRIBE from then on, as the release script falls back to PUBLISH
// there. A Cluster whose nodes run different versions (a rolling upgrade)
// mixes both: its waiters may miss wake-ups and fall back to their
// re-checks. So may waiters of a process running an older distlock (which
// subscribes with SUBSCRIBE) on a Cluster where newer ones release.
//
// Health check: a subscription connection that goes half-open (the peer
// vanished without a FIN, a black-holed route) would otherwise never be
// noticed, and every wake-up would be lost. When nothing arrives for
// healthInterval the reader sends a PING; when nothing arrives for another
// healthInterval, the connection is replaced and its waiters are woken to
// retry. So a dead subscription is noticed, and its waiters woken, within
// 2×healthInterval (2s) of the last message received, plus the time to
// write the PING (bounded by the client's WriteTimeout). This holds for
// every connection of a sharded notifier alike.

// LostWakeups returns how many releases of lk freed their lock but could
// not announce it, because Redis refused the PUBLISH (typically an ACL
// user without permission on the &distlock:* channels; Redis 7 gives new
// users none), or on a Redis Cluster the SPUBLISH (the user also needs
// +spublish there). Such a release still succeeds; callers blocked on the
// lock, in this process or another, then notice the release only at their
// next re-check: at the holder's expiry, after their retry strategy's
// delay, and at least every 2s with WithBlocking and no strategy. It is 0
// on a nil or zero Locker and counts from New; a value that grows means
// the wake-ups are lost: grant the channel permission (README, ACL). A
// Redlock's releases succeed the same way but are not counted.
func (lk *Locker) LostWakeups() uint64 {
	if lk == nil || lk.waiters == nil {
		return 0
	}
	return lk.waiters.lostWakeups.Load()
}

// wakeChannel is the channel the release script publishes on.
func wakeChannel(rk string) string { return rk + wakeSuffix }

const wakeSuffix = ":wake"

// The commands that publish a wake-up, passed to the scripts that do.
const (
	publishPlain   = "PUBLISH"
	publishSharded = "SPUBLISH" // the script falls back to PUBLISH where the server lacks it
)

// newNotifiers makes one notifier per client of an owner, and returns the
// command its releases publish with: SPUBLISH when every client is a
// Redis Cluster client (sharded pub/sub), else PUBLISH everywhere, so that
// each notifier listens the way its node is published to.
func newNotifiers(clients []redis.UniversalClient, onWake func(channel, payload string), onWakeAll func()) ([]*notifier, string) {
	publish := publishSharded
	for _, c := range clients {
		if _, ok := c.(*redis.ClusterClient); !ok {
			publish = publishPlain
			break
		}
	}
	ns := make([]*notifier, len(clients))
	for i, c := range clients {
		n := &notifier{client: c, onWake: onWake, onWakeAll: onWakeAll, chans: make(map[string]*chanState)}
		if publish == publishSharded {
			n.cluster = c.(*redis.ClusterClient)
		}
		ns[i] = n
	}
	return ns, publish
}

// healthInterval is how long a subscription may stay silent before the
// reader checks it with a PING (and, silent again as long, gives it up).
const healthInterval = time.Second

// subscribeIOTimeout bounds each SUBSCRIBE, UNSUBSCRIBE and PING the
// manager sends (the dial included), as far as the client honours ctx,
// and each look-up of a slot's master.
const subscribeIOTimeout = 2 * time.Second

// A notifier owns its manager goroutines for one deployment: at most one
// does I/O at a time, as each waits for the one before; each owns its
// subscriptions and their readers.
type notifier struct {
	client    redis.UniversalClient
	cluster   *redis.ClusterClient          // set: sharded pub/sub (unless noShards)
	onWake    func(channel, payload string) // a release was published on channel
	onWakeAll func()                        // messages may have been missed

	mu       sync.Mutex
	chans    map[string]*chanState // the channels wanted
	running  bool                  // a manager runs and will look at chans again
	kick     chan struct{}         // the running manager's: chans changed, or a reader reported
	lastDone chan struct{}         // closed when the last manager started has returned

	// Reported by the readers for the manager (guarded by mu).
	failed   []*subscription // connections to give up
	lost     []lostChannel   // sharded subscriptions the server dropped
	noShards bool            // the server has no SSUBSCRIBE: SUBSCRIBE from now on
}

// chanState is one wanted channel.
type chanState struct {
	refs  int
	ready chan struct{} // closed once the server confirmed the subscription
}

// lostChannel is a channel the server no longer sends on sub. moved: the
// node said the channel's slot is no longer its own (an SUNSUBSCRIBE
// nobody asked for, or MOVED).
type lostChannel struct {
	channel string
	sub     *subscription
	moved   bool
}

// watch subscribes channel (counting references) and returns a channel
// closed when the server has confirmed the subscription. It does no I/O.
func (n *notifier) watch(channel string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	cs := n.chans[channel]
	if cs == nil {
		cs = &chanState{ready: make(chan struct{})}
		n.chans[channel] = cs
	}
	cs.refs++
	if !n.running {
		n.running = true
		n.kick = make(chan struct{}, 1)
		prev, done := n.lastDone, make(chan struct{})
		n.lastDone = done
		// Owner: the notifier. A manager returns by itself once no channel
		// is wanted, and the next one waits for it before any I/O.
		go n.manage(n.kick, prev, done)
	}
	n.kickLocked()
	return cs.ready
}

// unwatch drops one reference to channel; the manager unsubscribes the
// last one, and stops when no channel is left. It does no I/O.
func (n *notifier) unwatch(channel string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cs := n.chans[channel]
	if cs == nil {
		return
	}
	if cs.refs--; cs.refs > 0 {
		return
	}
	delete(n.chans, channel)
	n.kickLocked()
}

func (n *notifier) kickLocked() {
	if n.running {
		select {
		case n.kick <- struct{}{}:
		default:
		}
	}
}

// subscription is one PubSub connection and its reader.
type subscription struct {
	ps      *redis.PubSub
	sharded bool   // SSUBSCRIBE on one node of a Cluster
	addr    string // that node ("" when not sharded)
	stop    chan struct{}
	done    chan struct{} // closed when the reader has returned

	// Guarded by notifier.mu.
	chans  map[string]bool // channels sent on it and not dropped since
	unsubs map[string]int  // SUNSUBSCRIBEs sent and not yet answered
	failed bool            // reported to the manager
}

// avoidance is a node not to subscribe a channel on until a time.
type avoidance struct {
	addr  string
	until time.Time
}

// placement is where the manager has sent a channel's subscription.
type placement struct {
	cs  *chanState
	sub *subscription
}

// manager is the state of one run of manage.
type manager struct {
	n       *notifier
	sharded bool
	subs    map[string]*subscription // by node address ("" when not sharded)
	on      map[string]placement     // channels as last sent

	// Sharded channels to subscribe again at retryAt, after the server
	// dropped them or their connection failed.
	deferred map[string]bool
	// avoid is, by channel, the node that said the channel's slot is no
	// longer its own, and until when a slot map that still names it is
	// taken for stale.
	avoid     map[string]avoidance
	retryAt   time.Time
	delay     time.Duration // the last retry's delay
	lastRetry time.Time     // when it was scheduled
}

// manage brings the subscriptions in line with the wanted channels every
// time they change, handles what the readers report (failed connections,
// dropped subscriptions), and returns, closing the subscriptions, once no
// channel is wanted.
func (n *notifier) manage(kick <-chan struct{}, prev <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if prev != nil {
		<-prev // the previous manager may still be closing its connections
	}
	m := &manager{
		n:        n,
		subs:     make(map[string]*subscription),
		on:       make(map[string]placement),
		deferred: make(map[string]bool),
		avoid:    make(map[string]avoidance),
	}
	defer m.closeAll()
	for {
		n.mu.Lock()
		if len(n.chans) == 0 {
			n.running = false
			n.mu.Unlock()
			return
		}
		failed, lost, noShards := n.failed, n.lost, n.noShards
		n.failed, n.lost = nil, nil
		n.mu.Unlock()

		sharded := n.cluster != nil && !noShards
		if m.sharded && !sharded {
			// The server has no sharded pub/sub: start over with
			// SUBSCRIBE (releases fall back to PUBLISH there).
			m.closeAll()
			n.onWakeAll()
		}
		m.sharded = sharded
		for _, sub := range failed {
			m.failed(sub)
		}
		for _, l := range lost {
			m.lost(l)
		}

		add, drop := m.plan()
		m.drop(drop)
		m.add(add)

		var retry <-chan time.Time
		if len(m.deferred) > 0 {
			t := time.NewTimer(time.Until(m.retryAt))
			retry = t.C
			select {
			case <-kick:
			case <-retry:
			}
			t.Stop()
			continue
		}
		<-kick
	}
}

// plan compares the wanted channels with those sent: add are to be
// (re-)subscribed (deferred ones only once their retry is due), drop to be
// unsubscribed.
func (m *manager) plan() (add map[string]*chanState, drop []string) {
	n := m.n
	n.mu.Lock()
	defer n.mu.Unlock()
	due := len(m.deferred) > 0 && !time.Now().Before(m.retryAt)
	add = make(map[string]*chanState)
	for ch, cs := range n.chans {
		if m.on[ch].cs == cs || (m.deferred[ch] && !due) {
			continue
		}
		add[ch] = cs
	}
	for ch := range m.on {
		if n.chans[ch] == nil {
			drop = append(drop, ch)
		}
	}
	for ch := range m.deferred {
		if due || n.chans[ch] == nil {
			delete(m.deferred, ch)
		}
	}
	for ch := range m.avoid {
		if n.chans[ch] == nil {
			delete(m.avoid, ch)
		}
	}
	if due || len(m.deferred) == 0 {
		m.retryAt = time.Time{}
	}
	return add, drop
}

// add subscribes the channels of add.
func (m *manager) add(add map[string]*chanState) {
	if len(add) == 0 {
		return
	}
	n := m.n
	if !m.sharded {
		// An error here means a broken connection: the reader sees it
		// too, and go-redis reconnects and re-subscribes every channel.
		sub := m.subs[""]
		if sub == nil {
			sub = m.open("", n.client.Subscribe(context.Background()), false)
		}
		chans := make([]string, 0, len(add))
		n.mu.Lock()
		for ch, cs := range add {
			chans = append(chans, ch)
			sub.chans[ch] = true
			m.on[ch] = placement{cs: cs, sub: sub}
		}
		n.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
		_ = sub.ps.Subscribe(ctx, chans...)
		cancel()
		sub.startOnce(n)
		return
	}

	// Sharded: on the master of each channel's slot, one SSUBSCRIBE per
	// slot. A channel whose master is unknown for now is tried again later.
	bySub := make(map[*subscription]map[uint16][]string)
	for ch, cs := range add {
		ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
		node, err := n.cluster.MasterForKey(ctx, ch)
		cancel()
		if err != nil {
			m.deferRetry(ch)
			continue
		}
		addr := node.Options().Addr
		if a, ok := m.avoid[ch]; ok && a.addr == addr && time.Now().Before(a.until) {
			// The client's slot map still names the node that just gave
			// the slot up: a subscription there (a replica now, after a
			// failover) could miss messages. Wait for the reload.
			m.deferRetry(ch)
			n.cluster.ReloadState(context.Background())
			continue
		}
		delete(m.avoid, ch)
		sub := m.subs[addr]
		if sub == nil {
			sub = m.open(addr, node.SSubscribe(context.Background()), true)
		}
		n.mu.Lock()
		if prev := m.on[ch].sub; prev != nil && prev != sub {
			delete(prev.chans, ch) // its slot moved: no longer ours there
		}
		sub.chans[ch] = true
		n.mu.Unlock()
		m.on[ch] = placement{cs: cs, sub: sub}
		if bySub[sub] == nil {
			bySub[sub] = make(map[uint16][]string)
		}
		slot := keySlot(ch)
		bySub[sub][slot] = append(bySub[sub][slot], ch)
	}
	for sub, slots := range bySub {
		ok := true
		for _, chans := range slots {
			ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
			err := sub.ps.SSubscribe(ctx, chans...)
			cancel()
			if err != nil {
				ok = false
				break
			}
		}
		if !ok {
			m.failed(sub) // could not reach the node: try again later
			continue
		}
		sub.startOnce(n)
	}
}

// drop unsubscribes the channels of drop. A sharded connection left with
// no channel is closed instead.
func (m *manager) drop(drop []string) {
	if len(drop) == 0 {
		return
	}
	n := m.n
	bySub := make(map[*subscription][]string)
	n.mu.Lock()
	for _, ch := range drop {
		sub := m.on[ch].sub
		delete(m.on, ch)
		delete(sub.chans, ch)
		bySub[sub] = append(bySub[sub], ch)
	}
	n.mu.Unlock()
	for sub, chans := range bySub {
		if !sub.sharded {
			ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
			_ = sub.ps.Unsubscribe(ctx, chans...)
			cancel()
			continue
		}
		n.mu.Lock()
		empty := len(sub.chans) == 0
		if !empty {
			for _, ch := range chans {
				sub.unsubs[ch]++
			}
		}
		n.mu.Unlock()
		if empty {
			m.closeSub(sub)
			continue
		}
		slots := make(map[uint16][]string)
		for _, ch := range chans {
			slots[keySlot(ch)] = append(slots[keySlot(ch)], ch)
		}
		for _, chans := range slots {
			ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
			err := sub.ps.SUnsubscribe(ctx, chans...)
			cancel()
			if err != nil {
				m.failed(sub)
				break
			}
		}
	}
}

// failed gives up sub, whose connection failed (or failed its health
// check). Its channels are subscribed again: at once on a new connection
// when not sharded (waking every waiter, as a release may have gone
// unheard), and for a sharded one after a back-off, where the slot map,
// reloaded meanwhile, says their slots now live.
func (m *manager) failed(sub *subscription) {
	if m.subs[sub.addr] != sub {
		return // already given up
	}
	m.closeSub(sub)
	var chans []string
	for ch, pl := range m.on {
		if pl.sub == sub {
			delete(m.on, ch)
			chans = append(chans, ch)
		}
	}
	if !sub.sharded {
		m.n.onWakeAll()
		return
	}
	for _, ch := range chans {
		m.deferRetry(ch)
	}
}

// lost handles a sharded subscription that the server dropped: it is
// subscribed again after a back-off, once the slot map was reloaded.
func (m *manager) lost(l lostChannel) {
	if pl, ok := m.on[l.channel]; !ok || pl.sub != l.sub {
		return // dropped, or sent elsewhere since
	}
	delete(m.on, l.channel)
	if l.moved {
		m.avoid[l.channel] = avoidance{addr: l.sub.addr, until: time.Now().Add(resubscribeBound)}
	}
	n := m.n
	n.mu.Lock()
	delete(l.sub.chans, l.channel)
	empty := len(l.sub.chans) == 0
	n.mu.Unlock()
	if empty {
		m.closeSub(l.sub)
	}
	m.deferRetry(l.channel)
}

// deferRetry has channel subscribed again at the next retry, and schedules
// one when none is: minReceiveBackoff after the first loss, doubling up to
// maxReceiveBackoff while losses follow each other, and it asks the client
// to reload the slot map meanwhile.
func (m *manager) deferRetry(channel string) {
	m.deferred[channel] = true
	if !m.retryAt.IsZero() {
		return
	}
	now := time.Now()
	if now.Sub(m.lastRetry) > 2*maxReceiveBackoff {
		m.delay = 0
	}
	m.delay = min(max(2*m.delay, minReceiveBackoff), maxReceiveBackoff)
	m.retryAt, m.lastRetry = now.Add(m.delay), now
	if m.n.cluster != nil {
		m.n.cluster.ReloadState(context.Background())
	}
}

// open registers a subscription with no channel yet (no I/O).
func (m *manager) open(addr string, ps *redis.PubSub, sharded bool) *subscription {
	sub := &subscription{
		ps:      ps,
		sharded: sharded,
		addr:    addr,
		stop:    make(chan struct{}),
		chans:   make(map[string]bool),
		unsubs:  make(map[string]int),
	}
	m.subs[addr] = sub
	return sub
}

// closeSub closes sub and forgets it; its channels stay in m.on, for the
// caller to deal with.
func (m *manager) closeSub(sub *subscription) {
	if m.subs[sub.addr] == sub {
		delete(m.subs, sub.addr)
	}
	sub.close()
}

// closeAll closes every subscription and forgets every channel sent.
func (m *manager) closeAll() {
	for _, sub := range m.subs {
		m.closeSub(sub)
	}
	clear(m.on)
	clear(m.deferred)
	clear(m.avoid)
	m.retryAt = time.Time{}
}

// startOnce starts the reader after the first subscription.
func (s *subscription) startOnce(n *notifier) {
	if s.done == nil {
		s.done = make(chan struct{})
		go n.read(s) // owner: the manager, which stops it and waits in close
	}
}

// close stops the reader, closes the connection and waits for the reader.
func (s *subscription) close() {
	close(s.stop)
	_ = s.ps.Close()
	if s.done != nil {
		<-s.done
	}
}

// Reader back-off after consecutive receive errors (a node that is down),
// and a sharded notifier's between tries to subscribe again.
const (
	minReceiveBackoff = 10 * time.Millisecond
	maxReceiveBackoff = time.Second
)

// resubscribeBound is how soon, once a Cluster has settled where a moved
// slot lives, a sharded notifier has subscribed its channels again: two
// tries, at most maxReceiveBackoff apart (plus the client's reload of its
// slot map).
const resubscribeBound = 2 * maxReceiveBackoff

// read dispatches the subscription's messages until it is stopped. A
// message or a (re-)subscription confirmation wakes the channel's waiters.
// Silence for healthInterval sends a PING; silence for as long again
// reports the connection failed and returns. On a plain subscription a
// receive error (a broken connection: messages may have been missed) wakes
// every waiter, and go-redis reconnects and re-subscribes; a sharded one
// reports it failed and returns instead, and reports the subscriptions the
// server drops, so that the manager subscribes them again where their
// slot now lives.
func (n *notifier) read(sub *subscription) {
	defer close(sub.done)
	var backoff time.Duration
	pinged := false
	for {
		msg, err := sub.ps.ReceiveTimeout(context.Background(), healthInterval)
		select {
		case <-sub.stop:
			return
		default:
		}
		var reply redis.Error
		if err != nil && errors.As(err, &reply) {
			// An error reply (say NOPERM for the PING of a user without
			// +ping, or for a channel it may not subscribe) proves the
			// connection alive; on a sharded subscription it may tell of
			// a slot that moved.
			if sub.sharded {
				n.shardError(sub, reply)
			}
			pinged = false
			continue
		}
		if err != nil && isSilence(err) {
			if pinged {
				n.fail(sub)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
			_ = sub.ps.Ping(ctx)
			cancel()
			pinged = true
			continue
		}
		if err != nil && sub.sharded {
			n.fail(sub)
			return
		}
		if err != nil {
			pinged = false
			n.onWakeAll()
			backoff = min(max(2*backoff, minReceiveBackoff), maxReceiveBackoff)
			t := time.NewTimer(backoff)
			select {
			case <-sub.stop:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			n.onWake(m.Channel, m.Payload)
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				n.confirm(m.Channel)
				n.onWake(m.Channel, "")
			case "sunsubscribe":
				n.sunsubscribed(sub, m.Channel)
			}
		}
	}
}

// isSilence reports whether a receive error is only the read timeout: the
// connection is as it was, nothing arrived.
func isSilence(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// confirm marks channel's subscription as confirmed by the server.
func (n *notifier) confirm(channel string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cs := n.chans[channel]; cs != nil {
		select {
		case <-cs.ready:
		default:
			close(cs.ready)
		}
	}
}

// fail reports sub's connection failed, once.
func (n *notifier) fail(sub *subscription) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !sub.failed {
		sub.failed = true
		n.failed = append(n.failed, sub)
		n.kickLocked()
	}
}

// sunsubscribed handles an SUNSUBSCRIBE on sub: the answer to one the
// manager sent, or the server dropping the subscription by itself (its
// node lost the channel's slot).
func (n *notifier) sunsubscribed(sub *subscription, channel string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if sub.unsubs[channel] > 0 {
		if sub.unsubs[channel]--; sub.unsubs[channel] == 0 {
			delete(sub.unsubs, channel)
		}
		return
	}
	if sub.chans[channel] {
		n.lost = append(n.lost, lostChannel{channel: channel, sub: sub, moved: true})
		n.kickLocked()
	}
}

// shardError handles an error reply on a sharded subscription: MOVED or
// ASK (the slot is served elsewhere), TRYAGAIN or CLUSTERDOWN (it is
// moving, or unserved) mean the subscriptions of that slot (of every slot
// of sub, when the reply names none) were not made; CROSSSLOT answers
// go-redis's re-subscription of several slots at once after it
// reconnected, so the connection is given up; an unknown SSUBSCRIBE means
// a server without sharded pub/sub. Other errors (NOPERM) leave things as
// they are: the waiters fall back to their re-checks.
func (n *notifier) shardError(sub *subscription, reply redis.Error) {
	msg := reply.Error()
	kind, rest, _ := strings.Cut(msg, " ")
	switch kind {
	case "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN":
		slot := -1
		if kind == "MOVED" || kind == "ASK" {
			s, _, _ := strings.Cut(rest, " ")
			if v, err := strconv.Atoi(s); err == nil {
				slot = v
			}
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		for ch := range sub.chans {
			if slot < 0 || int(keySlot(ch)) == slot {
				n.lost = append(n.lost, lostChannel{channel: ch, sub: sub, moved: kind == "MOVED"})
			}
		}
		n.kickLocked()
	case "CROSSSLOT":
		n.fail(sub)
	default:
		if l := strings.ToLower(msg); strings.Contains(l, "unknown command") && strings.Contains(l, "ssubscribe") {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.noShards = true
			n.kickLocked()
		}
	}
}
