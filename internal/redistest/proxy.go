package redistest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of one target address, for
// injecting latency, stalls and dropped connections between a client and a
// [Server]. Point a client at [Proxy.Addr] instead of the server.
//
// Each accepted connection gets its own connection to the target, dialled
// when it is accepted, and two copier goroutines, one per direction. All of
// them stop, and are waited for, when the connection is dropped or the proxy
// is closed in t.Cleanup. The methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by close: aborts dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop, dialers and copiers

	mu      sync.Mutex
	latency time.Duration
	stalled bool
	changed chan struct{} // closed and replaced when latency or stalled change
	conns   map[*proxyConn]struct{}
	closed  bool
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	client   net.Conn
	server   net.Conn      // nil until dialled; guarded by Proxy.mu
	done     chan struct{} // closed when the pair is dropped
	dropOnce sync.Once
}

// drop closes both connections, which ends both copiers. It may be called
// more than once; callers hold Proxy.mu, which guards server.
func (c *proxyConn) drop() {
	c.dropOnce.Do(func() {
		close(c.done)
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

// NewProxy starts a proxy listening on 127.0.0.1 (a free port) that forwards
// to target, which must be a loopback "host:port" (it fails the test
// otherwise). It is closed in t.Cleanup: the listener and every connection
// are closed and all goroutines waited for.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	if host, _, err := net.SplitHostPort(target); err != nil {
		t.Fatalf("redistest: NewProxy(%q): %v", target, err)
	} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		t.Fatalf("redistest: NewProxy(%q): target must be a loopback address", target)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		t.Fatalf("redistest: proxy listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target:  target,
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		conns:   make(map[*proxyConn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

// Addr returns the "127.0.0.1:port" address clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk of bytes by d in the direction it travels,
// measured from when the proxy read it, so a request/response round trip
// gets 2*d extra. 0 (the default) forwards at once. It applies to chunks
// already waiting, too.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
	p.notifyLocked()
}

// Stall(true) stops forwarding bytes in both directions: connections stay
// open, new ones are still accepted, but nothing reaches the other side
// until Stall(false).
func (p *Proxy) Stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = on
	p.notifyLocked()
}

// DropAll closes all current connections, on both sides; bytes not yet
// forwarded are lost. New connections are accepted as before.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.drop()
	}
}

// Conns returns the number of client connections currently open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// close stops accepting, drops all connections and waits for every
// goroutine.
func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.ln.Close()
	p.DropAll()
	p.wg.Wait()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		c := &proxyConn{client: client, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

// serve dials the target for c and runs the two copiers.
func (p *Proxy) serve(c *proxyConn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		c.drop()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	select {
	case <-c.done: // dropped while dialling
		p.mu.Unlock()
		server.Close()
		return
	default:
	}
	c.server = server
	p.mu.Unlock()

	var copiers sync.WaitGroup
	copiers.Add(2)
	go func() { defer copiers.Done(); p.pipe(c, server, c.client) }()
	go func() { defer copiers.Done(); p.pipe(c, c.client, server) }()
	copiers.Wait()
}

// pipe copies from src to dst chunk by chunk, applying stall and latency,
// until either side fails or c is dropped; then it drops c so the other
// direction ends too.
func (p *Proxy) pipe(c *proxyConn, dst, src net.Conn) {
	defer func() {
		p.mu.Lock()
		c.drop()
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(c, time.Now()) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gate blocks until a chunk read at readAt may be forwarded: not stalled and
// readAt+latency reached. It reports false when c was dropped meanwhile.
func (p *Proxy) gate(c *proxyConn, readAt time.Time) bool {
	for {
		p.mu.Lock()
		stalled, latency, changed := p.stalled, p.latency, p.changed
		p.mu.Unlock()
		if stalled {
			select {
			case <-changed:
				continue
			case <-c.done:
				return false
			}
		}
		wait := time.Until(readAt.Add(latency))
		if wait <= 0 {
			return true
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
			return true
		case <-changed:
			timer.Stop()
		case <-c.done:
			timer.Stop()
			return false
		}
	}
}
