package redistest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Faults injects faults at the level of one Redis command, between a
// go-redis client and its server: a command held back on its connection
// until the test lets it go, a reply lost after the server executed the
// command, or a command delayed. It is where two-holder bugs hide: the
// client gives up on a command (a timeout, a broken connection) that still
// reaches, or already reached, the server.
//
// Plug it into a client with [Faults.Options] (or [Faults.Dialer] as
// redis.Options.Dialer): every connection the client dials, including the
// ones of its autopipeliner, then passes through Faults, which reads the
// commands the client writes and the replies the server sends. Rules
// ([Faults.Hold], [Faults.DropReply], [Faults.Delay]) each apply to the first
// command written after the rule was added that matches its [Match], on
// any connection but a subscription one.
//
// Each connection has two pump goroutines (one per direction), and the
// client's side is a real TCP connection on 127.0.0.1, so that deadlines,
// closes and go-redis's connection checks behave as over a network. Everything is closed and waited for in t.Cleanup; a command
// still held back then never reaches the server. Methods are safe for
// concurrent use.
type Faults struct {
	ctx    context.Context // cancelled by close: aborts dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup // pumps

	mu     sync.Mutex
	rules  []*Rule
	conns  map[*faultConn]struct{}
	timers []*time.Timer // of Delay rules, stopped by close
	closed bool
}

// A Command is one command as the client wrote it: Args[0] is its name.
type Command struct {
	Args []string
}

// Name returns the command's name in lower case.
func (c Command) Name() string {
	if len(c.Args) == 0 {
		return ""
	}
	return strings.ToLower(c.Args[0])
}

// A Match selects commands.
type Match func(Command) bool

// Named matches commands with one of the given names (any case).
func Named(names ...string) Match {
	return func(c Command) bool {
		for _, n := range names {
			if strings.EqualFold(c.Name(), n) {
				return true
			}
		}
		return false
	}
}

// Script matches runs of the Lua script src, whether sent as EVAL with its
// source or as EVALSHA with its SHA1 (also EVAL_RO/EVALSHA_RO).
func Script(src string) Match {
	sum := sha1.Sum([]byte(src))
	sha := hex.EncodeToString(sum[:])
	return func(c Command) bool {
		if len(c.Args) < 2 {
			return false
		}
		switch c.Name() {
		case "eval", "eval_ro":
			return c.Args[1] == src
		case "evalsha", "evalsha_ro":
			return strings.EqualFold(c.Args[1], sha)
		}
		return false
	}
}

// And matches commands that every m matches.
func And(ms ...Match) Match {
	return func(c Command) bool {
		for _, m := range ms {
			if !m(c) {
				return false
			}
		}
		return true
	}
}

// Not matches the commands m does not match.
func Not(m Match) Match { return func(c Command) bool { return !m(c) } }

// HasArg matches commands with arg among their arguments (after the name).
func HasArg(arg string) Match {
	return func(c Command) bool {
		for _, a := range c.Args[1:] {
			if a == arg {
				return true
			}
		}
		return false
	}
}

// ruleKind is what a Rule does to its command.
type ruleKind uint8

const (
	ruleHold ruleKind = iota
	ruleDrop
	ruleDelay
)

// A Rule is one fault waiting for its command, or applied to it. Its
// methods are safe for concurrent use.
type Rule struct {
	f      *Faults
	kind   ruleKind
	match  Match
	delay  time.Duration
	caught chan struct{} // closed when the rule applied to a command
	done   chan struct{} // closed when the command's reply came from the server

	// Set when caught, guarded by f.mu.
	cmd  Command
	conn *faultConn
	seq  int64 // the command's place among the connection's commands
}

// Hold adds a rule that holds back the next command matching m: the client's
// write succeeds, but neither that command nor any later one on the same
// connection reaches the server until [Rule.Release]. Meanwhile the client
// typically times out and drops the connection: the held commands still go
// out on Release, as a write delayed in the network would.
func (f *Faults) Hold(m Match) *Rule { return f.add(&Rule{kind: ruleHold, match: m}) }

// DropReply adds a rule for the next command matching m: the server
// executes it, but its reply never reaches the client, whose connection is
// closed instead of receiving it (replies to earlier commands on that
// connection are delivered). The client sees the connection die with the
// reply in flight, and may re-send the command (go-redis retries on such
// errors unless MaxRetries is -1).
func (f *Faults) DropReply(m Match) *Rule { return f.add(&Rule{kind: ruleDrop, match: m}) }

// Delay adds a rule that holds back the next command matching m (and those
// after it on its connection) for d, then lets it go.
func (f *Faults) Delay(m Match, d time.Duration) *Rule {
	return f.add(&Rule{kind: ruleDelay, match: m, delay: d})
}

// Clear removes the rules that have not applied to a command yet.
func (f *Faults) Clear() {
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
}

func (f *Faults) add(r *Rule) *Rule {
	r.f = f
	r.caught = make(chan struct{})
	r.done = make(chan struct{})
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return r
}

// Caught returns a channel closed once the rule has applied to a command.
func (r *Rule) Caught() <-chan struct{} { return r.caught }

// Done returns a channel closed once the server has answered the rule's
// command: it executed it (for DropReply: and the reply was dropped).
func (r *Rule) Done() <-chan struct{} { return r.done }

// Command returns the command the rule applied to, or a zero Command
// before Caught is closed.
func (r *Rule) Command() Command {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	return r.cmd
}

// Release lets the commands held back by a Hold rule go to the server and
// waits, at most timeout, until the server has answered the held command:
// when Release returns nil the command has been executed. It fails when
// the rule has caught nothing yet, when its connection to the server
// died, or on timeout.
func (r *Rule) Release(timeout time.Duration) error {
	r.f.mu.Lock()
	c := r.conn
	r.f.mu.Unlock()
	if c == nil {
		return errors.New("redistest: Release: the rule has caught no command")
	}
	if err := c.flush(r); err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-c.dead:
		select {
		case <-r.done:
			return nil
		default:
		}
		return errors.New("redistest: Release: the connection to the server died before the reply")
	case <-t.C:
		return fmt.Errorf("redistest: Release: no reply from the server within %v", timeout)
	}
}

// NewFaults returns a Faults with no rules, closed in t.Cleanup.
func NewFaults(t testing.TB) *Faults {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Faults{ctx: ctx, cancel: cancel, conns: make(map[*faultConn]struct{})}
	t.Cleanup(f.close)
	return f
}

// Options sets f's Dialer on a client's options; pass it to [Server.Client].
func (f *Faults) Options(o *redis.Options) { o.Dialer = f.Dialer }

// Dialer dials addr, which must be a loopback address, and returns the
// client's side of a connection passing through f.
func (f *Faults) Dialer(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("redistest: Faults dials loopback addresses only, not %q", addr)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	unlink := context.AfterFunc(f.ctx, stop)
	defer unlink()
	var d net.Dialer
	server, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	client, mine, err := loopbackPair(ctx)
	if err != nil {
		server.Close()
		return nil, err
	}
	c := &faultConn{f: f, server: server, client: mine, dead: make(chan struct{})}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		server.Close()
		mine.Close()
		client.Close()
		return nil, errors.New("redistest: Faults closed")
	}
	f.conns[c] = struct{}{}
	f.wg.Add(2)
	f.mu.Unlock()
	go c.up()   // owner: f, which closes the connection and waits in close
	go c.down() // owner: f, likewise
	return client, nil
}

// loopbackPair returns the two ends of a new TCP connection on 127.0.0.1,
// so that the client's side behaves as a network connection does (its
// deadlines, its peer's close seen as EOF, go-redis's health check).
func loopbackPair(ctx context.Context) (client, mine net.Conn, err error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	var d net.Dialer
	client, err = d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	// The kernel completed the handshake: Accept returns at once.
	if mine, err = ln.Accept(); err != nil {
		client.Close()
		return nil, nil, err
	}
	if mine.RemoteAddr().String() != client.LocalAddr().String() {
		client.Close()
		mine.Close()
		return nil, nil, errors.New("redistest: Faults: a stranger connected first")
	}
	return client, mine, nil
}

// close closes every connection and waits for the pumps.
func (f *Faults) close() {
	f.cancel()
	f.mu.Lock()
	f.closed = true
	for _, t := range f.timers {
		t.Stop()
	}
	for c := range f.conns {
		c.kill()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// takeLocked returns the first rule that matches cmd and removes it; f.mu held.
func (f *Faults) takeLocked(cmd Command) *Rule {
	for i, r := range f.rules {
		if r.match(cmd) {
			f.rules = append(f.rules[:i:i], f.rules[i+1:]...)
			return r
		}
	}
	return nil
}

// faultConn is one client connection passing through Faults. The pump up
// reads commands from the client's pipe and writes them to the server
// (unless held); the pump down reads replies from the server and writes
// them to the pipe (unless dropped). Replies are matched to commands by
// their order, which Redis keeps on a connection.
type faultConn struct {
	f      *Faults
	server net.Conn
	client net.Conn      // this side of the client's connection
	dead   chan struct{} // closed by kill
	once   sync.Once
	// wmu orders the writes to the server (the up pump's and a flush's);
	// it is taken before f.mu, and no write happens under f.mu, so that
	// closing f never waits for a write to a stalled server.
	wmu sync.Mutex

	// Guarded by f.mu.
	sent       int64    // commands forwarded or held, in order
	replied    int64    // replies read from the server
	hold       *Rule    // the rule holding this connection back, if any
	held       [][]byte // commands held back, in order
	drops      map[int64]*Rule
	waits      map[int64]*Rule // rules whose Done waits for reply seq
	clientGone bool            // the client closed its side
	pubsub     bool            // a subscription connection: passed through
}

// kill closes both sides; the pumps then end.
func (c *faultConn) kill() {
	c.once.Do(func() {
		close(c.dead)
		c.server.Close()
		c.client.Close()
	})
}

// finishedLocked reports whether a connection whose client is gone has
// nothing left to do: no command held back, no reply a rule waits for.
func (c *faultConn) finishedLocked() bool {
	return c.clientGone && c.hold == nil && len(c.waits) == 0
}

// up pumps commands from the client to the server.
func (c *faultConn) up() {
	defer c.f.wg.Done()
	var p respParser
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			p.feed(buf[:n])
			for {
				raw, args, ok, perr := p.nextCommand()
				if perr != nil {
					c.kill()
					return
				}
				if !ok {
					break
				}
				if werr := c.forward(raw, args); werr != nil {
					c.kill()
					return
				}
			}
		}
		if err != nil {
			c.f.mu.Lock()
			c.clientGone = true
			finished := c.finishedLocked()
			c.f.mu.Unlock()
			if finished {
				c.kill()
			}
			// Otherwise held commands still go out on Release, and the
			// connection ends once the replies rules wait for are in.
			return
		}
	}
}

// forward sends one command on to the server, or holds it back.
func (c *faultConn) forward(raw []byte, args []string) error {
	f := c.f
	c.wmu.Lock()
	defer c.wmu.Unlock()
	f.mu.Lock()
	seq := c.sent
	c.sent++
	cmd := Command{Args: args}
	switch cmd.Name() {
	case "subscribe", "psubscribe", "ssubscribe":
		c.pubsub = true
	}
	var r *Rule
	if c.hold == nil && !c.pubsub {
		r = f.takeLocked(cmd)
	}
	if r != nil {
		r.cmd, r.conn, r.seq = cmd, c, seq
		close(r.caught)
		if c.waits == nil {
			c.waits = make(map[int64]*Rule)
		}
		c.waits[seq] = r
		switch r.kind {
		case ruleDrop:
			if c.drops == nil {
				c.drops = make(map[int64]*Rule)
			}
			c.drops[seq] = r
		case ruleHold, ruleDelay:
			c.hold = r
		}
		if r.kind == ruleDelay {
			f.timers = append(f.timers, time.AfterFunc(r.delay, func() { _ = c.flush(r) }))
		}
	}
	if c.hold != nil {
		c.held = append(c.held, bytes.Clone(raw))
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	_, err := c.server.Write(raw)
	return err
}

// flush sends the commands held back by r to the server.
func (c *faultConn) flush(r *Rule) error {
	f := c.f
	c.wmu.Lock()
	defer c.wmu.Unlock()
	f.mu.Lock()
	if c.hold != r {
		f.mu.Unlock()
		return nil // already flushed
	}
	held := c.held
	c.hold, c.held = nil, nil
	f.mu.Unlock()
	for _, raw := range held {
		if _, err := c.server.Write(raw); err != nil {
			c.kill()
			return fmt.Errorf("redistest: Release: %w", err)
		}
	}
	return nil
}

// down pumps replies from the server to the client.
func (c *faultConn) down() {
	defer c.f.wg.Done()
	defer c.kill()
	var p respParser
	buf := make([]byte, 32<<10)
	for {
		n, err := c.server.Read(buf)
		if n > 0 {
			p.feed(buf[:n])
			for {
				raw, push, ok, perr := p.nextReply()
				if perr != nil {
					return
				}
				if !ok {
					break
				}
				if !c.deliver(raw, push) {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// deliver passes one reply to the client, or drops it and ends the
// connection; it returns false when the pump must stop.
func (c *faultConn) deliver(raw []byte, push bool) bool {
	f := c.f
	f.mu.Lock()
	var drop bool
	if !push && !c.pubsub {
		seq := c.replied
		c.replied++
		if r := c.waits[seq]; r != nil {
			delete(c.waits, seq)
			close(r.done)
		}
		if c.drops[seq] != nil {
			delete(c.drops, seq)
			drop = true
		}
	}
	gone, finished := c.clientGone, c.finishedLocked()
	f.mu.Unlock()
	if drop || finished {
		return false
	}
	if !gone {
		if _, err := c.client.Write(raw); err != nil {
			f.mu.Lock()
			c.clientGone = true
			finished = c.finishedLocked()
			f.mu.Unlock()
			return !finished
		}
	}
	return true
}

// respParser splits a byte stream into RESP values (RESP2 and RESP3).
type respParser struct {
	buf []byte
}

func (p *respParser) feed(b []byte) { p.buf = append(p.buf, b...) }

var errRESP = errors.New("redistest: malformed RESP")

// nextCommand returns the next complete command: its bytes and arguments.
func (p *respParser) nextCommand() (raw []byte, args []string, ok bool, err error) {
	if len(p.buf) == 0 {
		return nil, nil, false, nil
	}
	if p.buf[0] != '*' {
		return nil, nil, false, errRESP // go-redis writes arrays only
	}
	line, pos, ok := readLine(p.buf, 0)
	if !ok {
		return nil, nil, false, nil
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n < 0 {
		return nil, nil, false, errRESP
	}
	args = make([]string, 0, n)
	for range n {
		var l []byte
		if l, pos, ok = readLine(p.buf, pos); !ok {
			return nil, nil, false, nil
		}
		if len(l) == 0 || l[0] != '$' {
			return nil, nil, false, errRESP
		}
		size, err := strconv.Atoi(string(l[1:]))
		if err != nil || size < 0 {
			return nil, nil, false, errRESP
		}
		if len(p.buf) < pos+size+2 {
			return nil, nil, false, nil
		}
		args = append(args, string(p.buf[pos:pos+size]))
		pos += size + 2
	}
	raw = bytes.Clone(p.buf[:pos])
	p.buf = p.buf[pos:]
	return raw, args, true, nil
}

// nextReply returns the next complete reply and whether it is a RESP3
// push (which answers no command). An attribute is returned with the value
// it annotates.
func (p *respParser) nextReply() (raw []byte, push, ok bool, err error) {
	if len(p.buf) == 0 {
		return nil, false, false, nil
	}
	push = p.buf[0] == '>'
	end, ok, err := skipValue(p.buf, 0)
	if err != nil || !ok {
		return nil, false, false, err
	}
	raw = bytes.Clone(p.buf[:end])
	p.buf = p.buf[end:]
	return raw, push, true, nil
}

// skipValue returns the end of the RESP value that starts at pos.
func skipValue(b []byte, pos int) (end int, ok bool, err error) {
	line, next, ok := readLine(b, pos)
	if !ok {
		return 0, false, nil
	}
	if len(line) == 0 {
		return 0, false, errRESP
	}
	switch line[0] {
	case '+', '-', ':', '_', '#', ',', '(':
		return next, true, nil
	case '$', '!', '=':
		size, err := strconv.Atoi(string(line[1:]))
		if err != nil {
			return 0, false, errRESP
		}
		if size < 0 { // RESP2 null bulk string
			return next, true, nil
		}
		if len(b) < next+size+2 {
			return 0, false, nil
		}
		return next + size + 2, true, nil
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil {
			return 0, false, errRESP
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		pos = next
		for range max(n, 0) {
			if pos, ok, err = skipValue(b, pos); !ok || err != nil {
				return 0, ok, err
			}
		}
		if line[0] == '|' { // an attribute precedes the value it annotates
			return skipValue(b, pos)
		}
		return pos, true, nil
	}
	return 0, false, errRESP
}

// readLine returns the line starting at pos without its CRLF, and where the
// next one starts.
func readLine(b []byte, pos int) (line []byte, next int, ok bool) {
	i := bytes.Index(b[pos:], []byte("\r\n"))
	if i < 0 {
		return nil, 0, false
	}
	return b[pos : pos+i], pos + i + 2, true
}
