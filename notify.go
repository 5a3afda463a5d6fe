package distlock

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Wake-ups. The release script publishes on the lock's channel
// ("<lock key>:wake"), so that blocked callers retry the moment a lock is
// released instead of polling. A notifier is one shared subscription
// connection to one node: it multiplexes every channel its owner's waiters
// wait on, starts with the first of them and stops when the last leaves.
//
// No caller ever waits for the subscription's I/O: watch and unwatch only
// record what is wanted, and the notifier's own goroutine (its manager)
// sends SUBSCRIBE and UNSUBSCRIBE, so a slow or black-holed node delays
// nobody's Obtain beyond the caller's ctx. A waiter learns that its
// subscription is confirmed from the channel watch returns.
//
// Health check: a subscription connection that goes half-open (the peer
// vanished without a FIN, a black-holed route) would otherwise never be
// noticed, and every wake-up would be lost. When nothing arrives for
// healthInterval the reader sends a PING; when nothing arrives for another
// healthInterval, the connection is replaced and every waiter is woken to
// retry. So a dead subscription is noticed, and its waiters woken, within
// 2×healthInterval (2s) of the last message received, plus the time to
// write the PING (bounded by the client's WriteTimeout).

// LostWakeups returns how many releases of lk freed their lock but could
// not announce it, because Redis refused the PUBLISH (typically an ACL
// user without permission on the &distlock:* channels; Redis 7 gives new
// users none). Such a release still succeeds; callers blocked on the lock,
// in this process or another, then notice the release only at their next
// re-check: at the holder's expiry, after their retry strategy's delay,
// and at least every 2s with WithBlocking and no strategy. It is 0 on a
// nil or zero Locker and counts from New; a value that grows means the
// wake-ups are lost: grant the channel permission (README, ACL). A
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

// healthInterval is how long a subscription may stay silent before the
// reader checks it with a PING (and, silent again as long, gives it up).
const healthInterval = time.Second

// subscribeIOTimeout bounds each SUBSCRIBE, UNSUBSCRIBE and PING the
// manager sends (the dial included), as far as the client honours ctx.
const subscribeIOTimeout = 2 * time.Second

// A notifier owns its manager goroutines for one node: at most one does
// I/O at a time, as each waits for the one before; each owns one
// subscription at a time and its reader.
type notifier struct {
	client    redis.UniversalClient
	onWake    func(channel string) // a release was published on channel
	onWakeAll func()               // messages may have been missed

	mu       sync.Mutex
	chans    map[string]*chanState // the channels wanted
	running  bool                  // a manager runs and will look at chans again
	kick     chan struct{}         // the running manager's: chans changed
	lastDone chan struct{}         // closed when the last manager started has returned
}

// chanState is one wanted channel.
type chanState struct {
	refs  int
	ready chan struct{} // closed once the server confirmed the subscription
}

func newNotifier(client redis.UniversalClient, onWake func(string), onWakeAll func()) *notifier {
	return &notifier{client: client, onWake: onWake, onWakeAll: onWakeAll, chans: make(map[string]*chanState)}
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
	ps   *redis.PubSub
	stop chan struct{} // closed to stop the reader
	done chan struct{} // closed when the reader has returned
	dead chan struct{} // closed by the reader when the connection failed its health check
}

// manage brings the subscription in line with the wanted channels every
// time they change, replaces a subscription that failed its health check,
// and returns, closing the subscription, once no channel is wanted.
func (n *notifier) manage(kick <-chan struct{}, prev <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if prev != nil {
		<-prev // the previous manager may still be closing its connection
	}
	var sub *subscription
	subscribed := make(map[string]*chanState) // as last sent
	defer func() {
		if sub != nil {
			sub.close()
		}
	}()
	for {
		n.mu.Lock()
		if len(n.chans) == 0 {
			n.running = false
			n.mu.Unlock()
			return
		}
		var add, drop []string
		for ch, cs := range n.chans {
			if subscribed[ch] != cs {
				add = append(add, ch)
				subscribed[ch] = cs
			}
		}
		for ch := range subscribed {
			if n.chans[ch] == nil {
				drop = append(drop, ch)
				delete(subscribed, ch)
			}
		}
		n.mu.Unlock()

		// An error here means a broken connection: the reader sees it
		// too, and go-redis reconnects and re-subscribes every channel.
		if len(add) > 0 {
			if sub == nil {
				sub = n.open()
			}
			ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
			_ = sub.ps.Subscribe(ctx, add...)
			cancel()
			sub.startOnce(n)
		}
		if len(drop) > 0 && sub != nil {
			ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
			_ = sub.ps.Unsubscribe(ctx, drop...)
			cancel()
		}

		var dead <-chan struct{}
		if sub != nil {
			dead = sub.dead
		}
		select {
		case <-kick:
		case <-dead:
			// Half-open: start over on a new connection, and let every
			// waiter retry, as a release may have gone unheard.
			sub.close()
			sub = nil
			clear(subscribed)
			n.onWakeAll()
		}
	}
}

// open makes a subscription with no channel yet (no I/O).
func (n *notifier) open() *subscription {
	return &subscription{
		ps:   n.client.Subscribe(context.Background()),
		stop: make(chan struct{}),
		dead: make(chan struct{}),
	}
}

// startOnce starts the reader after the first SUBSCRIBE.
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

// Reader back-off after consecutive receive errors (a node that is down).
const (
	minReceiveBackoff = 10 * time.Millisecond
	maxReceiveBackoff = time.Second
)

// read dispatches the subscription's messages until it is stopped. A
// message or a (re-)subscription confirmation wakes the channel's waiters; a
// receive error (a broken connection: messages may have been missed) wakes
// every waiter. Silence for healthInterval sends a PING; silence for as
// long again closes sub.dead and returns.
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
			// connection alive; nothing was missed.
			pinged = false
			continue
		}
		if err != nil && isSilence(err) {
			if pinged {
				close(sub.dead)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), subscribeIOTimeout)
			_ = sub.ps.Ping(ctx)
			cancel()
			pinged = true
			continue
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
			n.onWake(m.Channel)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				n.confirm(m.Channel)
				n.onWake(m.Channel)
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
