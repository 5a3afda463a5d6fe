package main

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// countingDialer returns a go-redis Dialer whose connections count the
// commands the client sends (RESP arrays written to the socket) into n. It
// sees what a library asks of Redis: one command per EVALSHA, however many
// commands the script then runs inside the server.
func countingDialer(n *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 5 * time.Minute}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		sc, ok := c.(syscall.Conn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("dial %s: %T is not a syscall.Conn", addr, c)
		}
		return &countingConn{Conn: c, sc: sc, n: n}, nil
	}
}

// countingConn is a TCP connection that counts the commands written to it.
// It exposes the socket (SyscallConn) like the *net.TCPConn it wraps, so
// that go-redis health-checks it exactly as it would the plain connection.
type countingConn struct {
	net.Conn
	sc syscall.Conn
	n  *atomic.Int64
	p  respRequestCounter
}

func (c *countingConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if cmds := c.p.feed(b[:n]); cmds > 0 {
		c.n.Add(cmds)
	}
	return n, err
}

// respRequestCounter counts the RESP requests (arrays of bulk strings, as
// every go-redis command is sent) in a byte stream fed to it in pieces.
type respRequestCounter struct {
	state int   // what the next byte belongs to
	num   int64 // number being read (array length or bulk length)
	elems int64 // bulk strings still to come in the current array
	skip  int64 // payload bytes (plus CRLF) still to skip
}

const (
	respArrayStart = iota // expecting '*'
	respArrayLen          // reading the array length up to '\n'
	respBulkStart         // expecting '$'
	respBulkLen           // reading the bulk length up to '\n'
	respBulkBody          // skipping the payload and its CRLF
)

func (p *respRequestCounter) feed(b []byte) int64 {
	var cmds int64
	for i := 0; i < len(b); i++ {
		switch c := b[i]; p.state {
		case respArrayStart:
			if c == '*' {
				p.state, p.num = respArrayLen, 0
			}
		case respArrayLen:
			switch {
			case c >= '0' && c <= '9':
				p.num = p.num*10 + int64(c-'0')
			case c == '\n':
				cmds++
				p.elems = p.num
				p.state = respBulkStart
				if p.elems == 0 {
					p.state = respArrayStart
				}
			}
		case respBulkStart:
			if c == '$' {
				p.state, p.num = respBulkLen, 0
			}
		case respBulkLen:
			switch {
			case c >= '0' && c <= '9':
				p.num = p.num*10 + int64(c-'0')
			case c == '\n':
				p.skip = p.num + 2
				p.state = respBulkBody
			}
		case respBulkBody:
			take := min(p.skip, int64(len(b)-i))
			p.skip -= take
			i += int(take) - 1
			if p.skip == 0 {
				p.elems--
				p.state = respBulkStart
				if p.elems == 0 {
					p.state = respArrayStart
				}
			}
		}
	}
	return cmds
}
