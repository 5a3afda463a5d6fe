package distlock

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Wake-ups. The release script publishes on the lock's channel
// ("<lock key>:wake"), so that blocked callers retry the moment a lock is
// released instead of polling. A notifier is one shared subscription
// connection to one node: it multiplexes every channel its owner's waiters
// wait on, starts with the first of them and stops when the last leaves.

// wakeChannel is the channel the release script publishes on.
func wakeChannel(rk string) string { return rk + wakeSuffix }

const wakeSuffix = ":wake"

// A notifier owns at most one subscription (and its reader goroutine) at a
// time, for one node.
type notifier struct {
	client    redis.UniversalClient
	onWake    func(channel string) // a release was published on channel
	onWakeAll func()               // messages may have been missed

	ioMu sync.Mutex // serialises SUBSCRIBE/UNSUBSCRIBE writes and start/stop

	mu    sync.Mutex
	sub   *subscription
	chans map[string]*chanState
}

// subscription is one PubSub connection and its reader.
type subscription struct {
	ps   *redis.PubSub
	stop chan struct{} // closed to stop the reader
	done chan struct{} // closed when the reader has returned
}

// chanState is one subscribed channel.
type chanState struct {
	refs  int
	ready chan struct{} // closed once the server confirmed the subscription
}

func newNotifier(client redis.UniversalClient, onWake func(string), onWakeAll func()) *notifier {
	return &notifier{client: client, onWake: onWake, onWakeAll: onWakeAll, chans: make(map[string]*chanState)}
}

// watch subscribes channel (counting references) and returns a channel
// closed when the server has confirmed the subscription.
func (n *notifier) watch(channel string) <-chan struct{} {
	n.ioMu.Lock()
	defer n.ioMu.Unlock()
	n.mu.Lock()
	cs := n.chans[channel]
	if cs != nil {
		cs.refs++
		n.mu.Unlock()
		return cs.ready
	}
	cs = &chanState{refs: 1, ready: make(chan struct{})}
	n.chans[channel] = cs
	sub := n.sub
	n.mu.Unlock()

	if sub == nil {
		// The first channel starts the subscription; go-redis sends the
		// SUBSCRIBE at once and re-subscribes after reconnects.
		ps := n.client.Subscribe(context.Background(), channel)
		sub = &subscription{ps: ps, stop: make(chan struct{}), done: make(chan struct{})}
		n.mu.Lock()
		n.sub = sub
		n.mu.Unlock()
		go n.read(sub)
	} else {
		// An error here means a broken connection: the reader sees it too,
		// reconnects and re-subscribes every channel.
		_ = sub.ps.Subscribe(context.Background(), channel)
	}
	return cs.ready
}

// unwatch drops one reference to channel; the last one unsubscribes, and
// the last channel stops the subscription and waits for its reader.
func (n *notifier) unwatch(channel string) {
	n.ioMu.Lock()
	defer n.ioMu.Unlock()
	n.mu.Lock()
	cs := n.chans[channel]
	if cs == nil {
		n.mu.Unlock()
		return
	}
	cs.refs--
	if cs.refs > 0 {
		n.mu.Unlock()
		return
	}
	delete(n.chans, channel)
	sub := n.sub
	last := len(n.chans) == 0
	if last {
		n.sub = nil
	}
	n.mu.Unlock()
	if sub == nil {
		return
	}
	if last {
		close(sub.stop)
		_ = sub.ps.Close()
		<-sub.done
		return
	}
	_ = sub.ps.Unsubscribe(context.Background(), channel)
}

// Reader back-off after consecutive receive errors (a node that is down).
const (
	minReceiveBackoff = 10 * time.Millisecond
	maxReceiveBackoff = time.Second
)

// read dispatches the subscription's messages until it is stopped. A
// message or a (re-)subscription confirmation wakes the channel's waiters; a
// receive error (a broken connection: messages may have been missed) wakes
// every waiter.
func (n *notifier) read(sub *subscription) {
	defer close(sub.done)
	var backoff time.Duration
	for {
		msg, err := sub.ps.Receive(context.Background())
		select {
		case <-sub.stop:
			return
		default:
		}
		if err != nil {
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
