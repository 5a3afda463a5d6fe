package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestMain fails the run if any goroutine started by this package is still
// alive after all tests and their cleanups.
func TestMain(m *testing.M) {
	os.Exit(RunAndCheckLeaks(m))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestBinaryMissingSkips(t *testing.T) {
	before := skippedNoRedis.Load()
	// This skip is the test's own doing: it must not count in the run's
	// report of tests skipped for lack of Redis.
	defer skippedNoRedis.Add(-1)
	var sub *testing.T
	t.Run("missing", func(t *testing.T) {
		sub = t
		t.Setenv("REDIS_SERVER", "/nonexistent/redis-server")
		t.Setenv("DISTLOCK_REQUIRE_REDIS", "")
		Binary(t)
		t.Error("Binary returned with a missing binary")
	})
	if !sub.Skipped() {
		t.Error("Binary did not skip when REDIS_SERVER is missing")
	}
	if got := skippedNoRedis.Load() - before; got != 1 {
		t.Errorf("skips counted = %d, want 1", got)
	}
	line := skipReport()
	if !strings.Contains(line, "skipped") || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Errorf("skip report is not one line: %q", line)
	}
}

// TestSkipReport: the report is one line naming the count, and empty when
// nothing was skipped for lack of Redis.
func TestSkipReport(t *testing.T) {
	saved := skippedNoRedis.Load()
	defer skippedNoRedis.Store(saved)
	skippedNoRedis.Store(0)
	if got := skipReport(); got != "" {
		t.Errorf("report with no skips = %q, want none", got)
	}
	skippedNoRedis.Store(3)
	if got := skipReport(); !strings.HasPrefix(got, "redistest: 3 tests skipped") || strings.Count(got, "\n") != 1 {
		t.Errorf("report = %q", got)
	}
	skippedNoRedis.Store(1)
	if got := skipReport(); !strings.HasPrefix(got, "redistest: 1 test skipped") {
		t.Errorf("report = %q", got)
	}
}

func TestStartPing(t *testing.T) {
	ctx := ctxT(t)
	s := Start(t)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.Port() == 0 || s.Pid() == 0 {
		t.Fatalf("Addr %q Port %d Pid %d", s.Addr(), s.Port(), s.Pid())
	}
	c := s.Client(t)
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", "w", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := s.CommandStats(t)["set"]; got != 2 {
		t.Errorf(`CommandStats()["set"] = %d, want 2`, got)
	}
	if got := s.Exec(t, "CONFIG", "GET", "save"); fmt.Sprint(got) != "[save ]" {
		t.Errorf("CONFIG GET save = %v, want no save points", got)
	}
	if got := s.Exec(t, "GET", "missing"); got != nil {
		t.Errorf("Exec(GET missing) = %v, want nil", got)
	}
	if got := s.Info(t, "persistence", "aof_enabled"); got != "0" {
		t.Errorf("aof_enabled = %q, want 0", got)
	}
	if _, err := os.Stat(s.LogPath()); err != nil {
		t.Errorf("log file: %v", err)
	}
}

func TestStartN(t *testing.T) {
	servers := StartN(t, 3)
	seen := map[int]bool{}
	for _, s := range servers {
		if seen[s.Port()] {
			t.Fatalf("port %d used twice", s.Port())
		}
		seen[s.Port()] = true
		if got := s.Exec(t, "PING"); got != "PONG" {
			t.Errorf("%s: PING = %v", s.Addr(), got)
		}
	}
}

func TestPauseResume(t *testing.T) {
	ctx := ctxT(t)
	s := Start(t)
	c := s.Client(t, func(o *redis.Options) { o.ReadTimeout = 200 * time.Millisecond })
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Pause(t)
	start := time.Now()
	err := c.Get(ctx, "k").Err()
	if !isTimeout(err) {
		t.Fatalf("GET on a paused server: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}

	s.Resume(t)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Resume = %q, %v", got, err)
	}
}

func TestCleanupStopsPausedServer(t *testing.T) {
	t.Run("paused", func(t *testing.T) {
		t.TempDir() // its removal is registered first, so it runs last
		var s *Server
		t.Cleanup(func() {
			// Runs after the server's own cleanup; s is nil when Start
			// skipped (no redis-server) or failed.
			if s == nil {
				return
			}
			if s.Pid() != 0 {
				t.Fatalf("server still running after cleanup, pid %d", s.Pid())
			}
			log, err := os.ReadFile(s.LogPath())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(log), "ready to exit") {
				t.Errorf("paused server was not stopped gracefully; log:\n%s", log)
			}
		})
		s = Start(t)
		s.Pause(t)
	})
}

func TestKillRestart(t *testing.T) {
	ctx := ctxT(t)
	s := Start(t)
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	port, pid := s.Port(), s.Pid()

	s.Kill(t)
	if s.Pid() != 0 {
		t.Errorf("Pid after Kill = %d", s.Pid())
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING on a killed server succeeded")
	}
	s.Kill(t) // idempotent

	s.Restart(t)
	if s.Port() != port || s.Pid() == pid || s.Pid() == 0 {
		t.Fatalf("after Restart: port %d (was %d), pid %d (was %d)", s.Port(), port, s.Pid(), pid)
	}
	if n := s.Exec(t, "DBSIZE"); n != int64(0) {
		t.Errorf("DBSIZE after Restart = %v, want 0", n)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after Restart: %v", err)
	}

	s.Stop(t)
	s.Stop(t) // idempotent
	if s.Pid() != 0 {
		t.Errorf("Pid after Stop = %d", s.Pid())
	}
}

func TestRestartKeepsAOF(t *testing.T) {
	s := Start(t, "--appendonly", "yes")
	s.Exec(t, "SET", "k", "v")
	s.Kill(t)
	s.Restart(t)
	if got := s.Exec(t, "GET", "k"); got != "v" {
		t.Errorf("GET after Restart with AOF = %v, want v", got)
	}
}

func TestCluster(t *testing.T) {
	ctx := ctxT(t)
	c := StartCluster(t, 3)
	if len(c.Addrs()) != 3 {
		t.Fatalf("Addrs = %v", c.Addrs())
	}
	cc := c.Client(t)
	for i := range 30 {
		if err := cc.Set(ctx, fmt.Sprintf("key:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET key:%d: %v", i, err)
		}
	}
	for _, n := range c.Nodes {
		if keys := n.Exec(t, "DBSIZE").(int64); keys == 0 {
			t.Errorf("node %s holds no keys", n.Addr())
		}
	}
	if got, err := cc.Get(ctx, "key:7").Result(); err != nil || got != "7" {
		t.Errorf("GET key:7 = %q, %v", got, err)
	}
}

func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("sentinel failover takes a few seconds")
	}
	ctx := ctxT(t)
	start := time.Now()
	s := StartSentinel(t)
	t.Logf("StartSentinel took %v", time.Since(start))

	fc := s.FailoverClient(t)
	if err := fc.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	oldPrimary := s.Primary

	start = time.Now()
	s.Failover(t)
	t.Logf("Failover took %v", time.Since(start))
	if s.Primary == oldPrimary || s.Replica != oldPrimary {
		t.Fatal("Failover did not swap Primary and Replica")
	}
	if got := s.MasterAddr(t); got != s.Primary.Addr() {
		t.Fatalf("MasterAddr = %s, want %s", got, s.Primary.Addr())
	}
	if got := s.Primary.Exec(t, "GET", "before"); got != "1" {
		t.Errorf("new primary lost the replicated key: GET before = %v", got)
	}

	// The failover client follows +switch-master on its own.
	start = time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fc.Set(ctx, "after", "1", 0).Err()
		if err == nil && s.Primary.Exec(t, "GET", "after") == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failover client still not writing to the new primary: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("failover client switched %v after Failover returned", time.Since(start))
}

func TestProxy(t *testing.T) {
	ctx := ctxT(t)
	s := Start(t)
	p := NewProxy(t, s.Addr())
	c := s.Client(t, func(o *redis.Options) {
		o.Addr = p.Addr()
		o.ReadTimeout = 300 * time.Millisecond
	})
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING through proxy: %v", err)
	}

	t.Run("latency", func(t *testing.T) {
		p.SetLatency(100 * time.Millisecond)
		defer p.SetLatency(0)
		start := time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("round trip with 100ms one-way latency took %v", d)
		}
	})

	t.Run("stall", func(t *testing.T) {
		conn := dialRaw(t, p.Addr())
		r := bufio.NewReader(conn)
		p.Stall(true)
		if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
			t.Fatal(err)
		}
		if err := c.Ping(ctx).Err(); !isTimeout(err) {
			t.Errorf("go-redis PING while stalled: %v, want a timeout", err)
		}
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := r.ReadString('\n'); !isTimeout(err) {
			t.Fatalf("read while stalled: %v, want a timeout", err)
		}
		p.Stall(false)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("after Stall(false): %q, %v", line, err)
		}
		if err := c.Ping(ctx).Err(); err != nil {
			t.Errorf("go-redis PING after Stall(false): %v", err)
		}
	})

	t.Run("drop", func(t *testing.T) {
		conn := dialRaw(t, p.Addr())
		if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("PING: %q, %v", line, err)
		}
		if p.Conns() == 0 {
			t.Fatal("Conns() = 0 with an open connection")
		}
		p.DropAll()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.ReadString('\n'); err == nil || isTimeout(err) {
			t.Fatalf("read after DropAll: %v, want connection closed", err)
		}
		if err := c.Ping(ctx).Err(); err != nil {
			t.Errorf("go-redis PING after DropAll (new connection): %v", err)
		}
	})
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_set:calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=2,usec=1,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r\n"
	got, err := parseCommandStats(info)
	if err != nil {
		t.Fatal(err)
	}
	if got["set"] != 3 || got["client|setinfo"] != 2 || len(got) != 2 {
		t.Errorf("parseCommandStats = %v", got)
	}
}

// fakeTB records Fatalf instead of failing the real test, and collects
// cleanups so the test can run them. Everything else goes to the real T.
type fakeTB struct {
	*testing.T
	mu       sync.Mutex
	cleanups []func()
	fatal    string
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

// run calls fn in its own goroutine (so Fatalf can Goexit), then runs the
// recorded cleanups, and returns the Fatalf message or "".
func (f *fakeTB) run(fn func()) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	f.cleanups = nil
	return f.fatal
}

func TestStartFailureShowsLog(t *testing.T) {
	Binary(t)
	f := &fakeTB{T: t}
	msg := f.run(func() { Start(f, "--no-such-directive", "x") })
	if !strings.Contains(msg, "did not start") || !strings.Contains(msg, "no-such-directive") {
		t.Errorf("Fatal message does not quote the log:\n%s", msg)
	}
}

func TestRestartWaitsForBusyPort(t *testing.T) {
	s := Start(t)
	s.Kill(t)
	ln, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeTB{T: t}
	restarted := make(chan string, 1)
	go func() { restarted <- f.run(func() { s.Restart(f) }) }()

	// Restart retries while the port is taken; free it after a moment.
	select {
	case msg := <-restarted:
		ln.Close()
		t.Fatalf("Restart returned while the port was taken: %q", msg)
	case <-time.After(300 * time.Millisecond):
	}
	ln.Close()
	select {
	case msg := <-restarted:
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Restart did not return after the port was freed")
	}
	if got := s.Exec(t, "PING"); got != "PONG" {
		t.Errorf("PING after Restart = %v", got)
	}
}

func TestProxyRejectsNonLoopback(t *testing.T) {
	f := &fakeTB{T: t}
	if msg := f.run(func() { NewProxy(f, "192.0.2.1:6379") }); !strings.Contains(msg, "loopback") {
		t.Errorf("NewProxy with a non-loopback target: %q", msg)
	}
}

func isReserved(port int) bool {
	reserved.Lock()
	defer reserved.Unlock()
	return reserved.ports[port]
}

func TestPortReservedUntilCleanup(t *testing.T) {
	var port, bus int
	t.Run("servers", func(t *testing.T) {
		s := Start(t)
		port = s.Port()
		s.Kill(t)
		if !isReserved(port) {
			t.Errorf("port %d of a killed server is not reserved", port)
		}
	})
	if isReserved(port) {
		t.Errorf("port %d still reserved after cleanup", port)
	}

	p, err := reservePort(true)
	if err != nil {
		t.Fatal(err)
	}
	bus = p + 10000
	if !isReserved(p) || !isReserved(bus) || bus >= 65536 {
		t.Errorf("cluster ports %d, %d not reserved", p, bus)
	}
	releasePort(p, true)
	if isReserved(p) || isReserved(bus) {
		t.Errorf("cluster ports %d, %d still reserved after releasePort", p, bus)
	}
}
