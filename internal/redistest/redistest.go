// Package redistest starts real redis-server processes for tests.
//
// Every server listens on 127.0.0.1 only, lives in its own t.TempDir(), writes
// its stdout/stderr to redis.log in that directory and is stopped in
// t.Cleanup. Nothing here talks to any address other than loopback.
//
// The redis-server binary is taken from $REDIS_SERVER or found on PATH. When
// it is missing, tests that need it are skipped with a message, or fail when
// DISTLOCK_REQUIRE_REDIS=1 (see [Required]); [RunAndCheckLeaks] then prints
// one line with the number of tests skipped.
//
// Every goroutine the package starts (one waiter per redis-server process,
// the accept loop and copiers of a [Proxy]) is stopped and waited for before
// the t.Cleanup that owns it returns, so a goroutine-leak check at the end of
// a test run sees none of them. Clients returned by the Client methods are
// closed in t.Cleanup too; go-redis itself may need a moment after Close to
// let its own short-lived goroutines finish.
//
// All functions and methods that take a testing.TB may call t.Fatal and must
// be called from the goroutine running the test.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Timeouts used by the harness.
const (
	// startTimeout bounds how long Start and Restart wait for a new process
	// to answer PING.
	startTimeout = 10 * time.Second
	// stopTimeout is how long a graceful stop waits after SIGTERM before it
	// sends SIGKILL.
	stopTimeout = 5 * time.Second
	// startAttempts is how many ports Start tries when redis-server reports
	// "Address already in use".
	startAttempts = 5
	// logTailBytes is how much of redis.log a failure message includes.
	logTailBytes = 4096
)

// loopback is the only address the harness binds or dials.
const loopback = "127.0.0.1"

// Required reports whether DISTLOCK_REQUIRE_REDIS=1 is set, in which case a
// missing redis-server fails the test instead of skipping it.
func Required() bool {
	return os.Getenv("DISTLOCK_REQUIRE_REDIS") == "1"
}

// missing skips the test, or fails it when [Required] is true.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("redistest: %s (DISTLOCK_REQUIRE_REDIS=1)", msg)
	}
	skippedNoRedis.Add(1)
	t.Skipf("redistest: %s; skipping (set DISTLOCK_REQUIRE_REDIS=1 to fail instead)", msg)
}

// Binary returns the path of the redis-server binary: $REDIS_SERVER when it is
// set, otherwise redis-server looked up on PATH. When no usable binary is
// found the test is skipped with a message, or fails when [Required] is true.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			missing(t, "REDIS_SERVER=%q is not an executable: %v", p, err)
		}
		return path
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server not found on PATH (install Redis or set REDIS_SERVER)")
	}
	return path
}

// Server is one redis-server process on 127.0.0.1, started by [Start] or
// [StartN] (or as part of a [Cluster] or [Sentinel]). Its methods must be
// called from the test goroutine.
type Server struct {
	bin     string
	dir     string
	port    int
	args    []string // command line after the binary, fixed once started
	logPath string
	what    string // "redis-server", "cluster node", "sentinel": for messages
	cluster bool   // also owns the cluster bus port, port+10000

	mu     sync.Mutex // guards proc and paused, serialises process control
	proc   *process   // nil when not running
	paused bool
}

// process is one run of redis-server plus the goroutine that waits for it.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // result of cmd.Wait, valid once done is closed
	// stopping is set before the harness signals the process to exit, so an
	// exit without it is reported as unexpected.
	stopping bool
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// config describes how to build one kind of server.
type config struct {
	what string
	// cluster asks for a port P with P+10000 also free (cluster bus).
	cluster bool
	// argv returns the command line (after the binary) for a given port.
	// It is called once per start attempt with a fresh port.
	argv func(port int, dir string) ([]string, error)
}

// standardArgs returns the arguments every data server gets: loopback only,
// the given port and directory, no persistence, no protected mode.
func standardArgs(port int, dir string) []string {
	return []string{
		"--bind", loopback,
		"--port", strconv.Itoa(port),
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
	}
}

func plainConfig(extra []string) config {
	return config{
		what: "redis-server",
		argv: func(port int, dir string) ([]string, error) {
			return append(standardArgs(port, dir), extra...), nil
		},
	}
}

// Start starts one redis-server on a free 127.0.0.1 port, in a new
// t.TempDir(), with
//
//	--bind 127.0.0.1 --port P --dir DIR --save "" --appendonly no --protected-mode no
//
// followed by args (later arguments win, so "--appendonly", "yes" turns AOF
// on). It waits up to 10s for the process to answer PING and fails the test,
// quoting the end of redis.log, when it does not. If the port turns out to be
// taken, Start retries with another one a few times.
//
// The server is stopped in t.Cleanup: resumed if paused, then SIGTERM, then
// SIGKILL if it has not exited after 5s.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return StartN(t, 1, args...)[0]
}

// StartN starts n independent servers in parallel, each as [Start] would.
func StartN(t testing.TB, n int, args ...string) []*Server {
	t.Helper()
	if n < 0 {
		t.Fatalf("redistest: StartN(%d)", n)
	}
	cfgs := make([]config, n)
	for i := range cfgs {
		cfgs[i] = plainConfig(args)
	}
	return startAll(t, cfgs)
}

// startAll starts one server per config in parallel and fails the test if
// any of them does not come up. Cleanups are registered before the processes
// start so that a failure still stops whatever did start.
func startAll(t testing.TB, cfgs []config) []*Server {
	t.Helper()
	bin := Binary(t)
	servers := make([]*Server, len(cfgs))
	for i, cfg := range cfgs {
		s := &Server{bin: bin, dir: t.TempDir(), what: cfg.what}
		s.logPath = filepath.Join(s.dir, "redis.log")
		t.Cleanup(func() { s.cleanup(t) })
		servers[i] = s
	}
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.firstStart(cfgs[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return servers
}

// firstStart picks a port and starts the process, retrying with another port
// when the chosen one is taken.
func (s *Server) firstStart(cfg config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cluster = cfg.cluster
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		var port int
		port, err = reservePort(cfg.cluster)
		if err != nil {
			return err
		}
		var args []string
		if args, err = cfg.argv(port, s.dir); err == nil {
			s.port, s.args = port, args
			if err = s.launch(); err == nil {
				return nil
			}
		}
		releasePort(port, cfg.cluster)
		s.port = 0
		if !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

// cleanup stops the server at the end of the test and reports an unexpected
// earlier exit.
func (s *Server) cleanup(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.port != 0 {
		defer releasePort(s.port, s.cluster)
	}
	p := s.proc
	if p == nil {
		return
	}
	if p.exited() && !p.stopping {
		t.Logf("redistest: %s %s (pid %d) exited on its own: %v\n%s",
			s.what, s.Addr(), p.cmd.Process.Pid, p.err, s.logTail())
	}
	if err := s.stopLocked(true); err != nil {
		t.Logf("redistest: %v", err)
	}
}

var errAddrInUse = errors.New("address already in use")

// launch starts the process with s.args and waits until it answers. On
// failure nothing is left running. Called with s.mu held.
func (s *Server) launch() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", s.what, err)
	}
	st, err := logf.Stat()
	if err != nil {
		logf.Close()
		return fmt.Errorf("%s: stat log: %w", s.what, err)
	}
	logStart := st.Size()
	fmt.Fprintf(logf, "### redistest: starting %s %q\n", s.bin, s.args)

	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout = logf // an *os.File is handed to the child: no copying goroutine
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("%s: start %s: %w", s.what, s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { // owner: s; every stop path waits for p.done
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc, s.paused = p, false

	err = waitReady(p, s.Addr(), startTimeout)
	if err == nil {
		return nil
	}
	p.stopping = true
	if !p.exited() {
		_ = cmd.Process.Kill()
	}
	<-p.done
	s.proc = nil
	tail := s.logTailFrom(logStart)
	if strings.Contains(tail, "Address already in use") {
		return fmt.Errorf("%s on port %d: %w", s.what, s.port, errAddrInUse)
	}
	return fmt.Errorf("%s %s did not start: %v\n--- %s (tail) ---\n%s",
		s.what, s.Addr(), err, s.logPath, tail)
}

// waitReady polls until the process at addr is ours (INFO process_id) and
// answers PING with PONG, the process exits, or timeout passes.
func waitReady(p *process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("process exited: %v", p.err)
		}
		pid, err := probe(addr)
		switch {
		case err == nil && pid == p.cmd.Process.Pid:
			return nil
		case err == nil:
			// Somebody else's redis answered on our port: ours will fail
			// with "Address already in use" in a moment.
			last = fmt.Errorf("port answered by pid %d, not %d", pid, p.cmd.Process.Pid)
		default:
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG after %v: %v", timeout, last)
		}
		select {
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// probe sends INFO server and PING over a raw connection and returns the
// process_id from INFO when PING answered PONG (not -LOADING).
func probe(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(conn, "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n*1\r\n$4\r\nPING\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	info, err := readBulk(r)
	if err != nil {
		return 0, fmt.Errorf("INFO: %w", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("PING: %w", err)
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return 0, fmt.Errorf("PING: %s", line)
	}
	pid, err := strconv.Atoi(infoField(info, "process_id"))
	if err != nil {
		return 0, fmt.Errorf("INFO server without process_id")
	}
	return pid, nil
}

// readBulk reads one RESP bulk string reply.
func readBulk(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "$") {
		return "", fmt.Errorf("unexpected reply %q", line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 {
		return "", fmt.Errorf("unexpected reply %q", line)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// infoField returns the value of "name:value" in an INFO reply, or "".
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// reserved holds the ports (and cluster bus ports) of every Server of this
// process from its start until its cleanup, so that a port is never handed
// to a new server while its owner is down between Kill and Restart.
var reserved = struct {
	sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}

// ownPorts returns the ports a server on port uses: port, and port+10000
// (the cluster bus) for a cluster node.
func ownPorts(port int, cluster bool) []int {
	if cluster {
		return []int{port, port + 10000}
	}
	return []int{port}
}

// reservePort returns a port on 127.0.0.1 that could be bound just now and
// is not reserved, and reserves it (and its cluster bus port when cluster is
// set) until releasePort. Cluster bus ports stay below 65536.
//
// Ports are drawn at random from [15000, 32000), below the usual ephemeral
// ranges (Linux 32768+, BSD/macOS/Windows 49152+): outgoing connections then
// never take a server's port while it is between Kill and Restart.
func reservePort(cluster bool) (int, error) {
	reserved.Lock()
	defer reserved.Unlock()
	var last error
	for i := 0; i < 100; i++ {
		port := 15000 + rand.IntN(17000)
		own := ownPorts(port, cluster)
		last = nil
		for _, p := range own {
			if reserved.ports[p] {
				last = fmt.Errorf("port %d reserved", p)
			} else if err := probeBind(p); err != nil {
				last = err
			}
			if last != nil {
				break
			}
		}
		if last != nil {
			continue
		}
		for _, p := range own {
			reserved.ports[p] = true
		}
		return port, nil
	}
	return 0, fmt.Errorf("no free port on %s: %v", loopback, last)
}

// releasePort undoes reservePort.
func releasePort(port int, cluster bool) {
	reserved.Lock()
	defer reserved.Unlock()
	for _, p := range ownPorts(port, cluster) {
		delete(reserved.ports, p)
	}
}

func probeBind(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}

// logTail returns the end of redis.log.
func (s *Server) logTail() string { return s.logTailFrom(0) }

// logTailFrom returns up to logTailBytes of redis.log written after offset.
func (s *Server) logTailFrom(offset int64) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.logPath, err)
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	b = b[offset:]
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// Addr returns "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort(loopback, strconv.Itoa(s.port))
}

// Port returns the TCP port the server listens on; it stays the same across
// [Server.Restart].
func (s *Server) Port() int { return s.port }

// Dir returns the server's working directory (its t.TempDir()), which holds
// redis.log and any persistence files.
func (s *Server) Dir() string { return s.dir }

// LogPath returns the file that receives the server's stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

// Pid returns the process id of the running redis-server, or 0 when it is
// not running (after Kill or Stop).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// running returns the current process or fails the test.
func (s *Server) running(t testing.TB, op string) *process {
	t.Helper()
	if s.proc == nil {
		t.Fatalf("redistest: %s %s: %s is not running", op, s.Addr(), s.what)
	}
	return s.proc
}

// Pause stops the process with SIGSTOP: connections stay open but nothing is
// answered until [Server.Resume]. Cleanup resumes a paused server before
// stopping it. Pausing a paused server does nothing.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	if sigStop == nil {
		t.Skip("redistest: Pause needs SIGSTOP, not available on this platform")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.running(t, "Pause")
	if s.paused {
		return
	}
	if err := p.cmd.Process.Signal(sigStop); err != nil {
		t.Fatalf("redistest: Pause %s: %v", s.Addr(), err)
	}
	s.paused = true
}

// Resume continues a paused process with SIGCONT. Resuming a server that is
// not paused does nothing.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.paused || s.proc == nil {
		return
	}
	if err := s.proc.cmd.Process.Signal(sigCont); err != nil {
		t.Fatalf("redistest: Resume %s: %v", s.Addr(), err)
	}
	s.paused = false
}

// Kill sends SIGKILL and waits for the process to exit: no shutdown, no
// persistence, clients see their connections reset. Killing a server that is
// not running does nothing.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(false); err != nil {
		t.Fatalf("redistest: Kill: %v", err)
	}
}

// Stop shuts the server down gracefully now: SIGCONT if paused, SIGTERM,
// then SIGKILL if it has not exited after 5s. Stopping a server that is not
// running does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(true); err != nil {
		t.Fatalf("redistest: Stop: %v", err)
	}
}

// stopLocked ends the current process, if any, and waits for it. Called with
// s.mu held.
func (s *Server) stopLocked(graceful bool) error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	paused := s.paused
	s.paused = false
	p.stopping = true
	if p.exited() {
		return nil
	}
	var err error
	if graceful {
		if paused && sigCont != nil {
			_ = p.cmd.Process.Signal(sigCont)
		}
		if sigErr := p.cmd.Process.Signal(sigTerm); sigErr == nil {
			select {
			case <-p.done:
				return nil
			case <-time.After(stopTimeout):
				err = fmt.Errorf("%s %s ignored SIGTERM for %v; sent SIGKILL", s.what, s.Addr(), stopTimeout)
			}
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return err
}

// Restart starts the server again on the same port and in the same
// directory, with the same arguments, and waits for PING. A running server
// is stopped gracefully first. Without persistence arguments (the default)
// the restarted server is empty; with e.g. "--appendonly", "yes" it loads
// what it persisted. It retries for a few seconds if the port is briefly
// still taken.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(true); err != nil {
		t.Logf("redistest: Restart: %v", err)
	}
	deadline := time.Now().Add(stopTimeout)
	for {
		err := s.launch()
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			t.Fatalf("redistest: Restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Default client settings used by [Server.Client].
const (
	// DefaultTimeout is the dial, read and write timeout of harness clients.
	DefaultTimeout = time.Second
)

// disabledMaint turns off go-redis "maintenance notifications", which plain
// Redis does not support; it keeps the connection handshake to HELLO.
func disabledMaint() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// Client returns a new go-redis client for this server, closed in t.Cleanup.
// Defaults, which opts may change:
//
//   - DialTimeout, ReadTimeout, WriteTimeout: 1s ([DefaultTimeout]), so a
//     paused or stalled server turns into an error quickly;
//   - MaxRetries: -1 (no retries), so every command reaches the server at
//     most once and command counts and fault injection are exact;
//   - DialerRetries: 1 (one dial attempt per connection, no backoff);
//   - maintenance notifications disabled.
//
// Everything else is the go-redis default (RESP3, pool size, ...).
func (s *Server) Client(t testing.TB, opts ...func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{
		Addr:                     s.Addr(),
		DialTimeout:              DefaultTimeout,
		ReadTimeout:              DefaultTimeout,
		WriteTimeout:             DefaultTimeout,
		MaxRetries:               -1,
		DialerRetries:            1,
		MaintNotificationsConfig: disabledMaint(),
	}
	for _, opt := range opts {
		opt(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// do runs one command on a short-lived RESP2 client. A nil reply is
// returned as (nil, nil).
func (s *Server) do(args ...any) (any, error) {
	c := redis.NewClient(&redis.Options{
		Addr:                     s.Addr(),
		Protocol:                 2,
		DialTimeout:              2 * time.Second,
		ReadTimeout:              5 * time.Second,
		WriteTimeout:             5 * time.Second,
		MaxRetries:               -1,
		DialerRetries:            1,
		DisableIdentity:          true,
		MaintNotificationsConfig: disabledMaint(),
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Do(ctx, args...).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return v, err
}

// Exec runs one command on a short-lived client (RESP2, 5s read timeout)
// and returns its reply as go-redis Do returns it: string, int64, []any, or
// nil for a nil reply. Any error fails the test. Handy for FLUSHALL,
// CONFIG SET, DEBUG SLEEP, INFO.
func (s *Server) Exec(t testing.TB, args ...any) any {
	t.Helper()
	v, err := s.do(args...)
	if err != nil {
		t.Fatalf("redistest: %s %v: %v", s.Addr(), args, err)
	}
	return v
}

// Info returns the value of one INFO field (e.g. "role", "connected_clients")
// from INFO section, or "" when the field is absent.
func (s *Server) Info(t testing.TB, section, field string) string {
	t.Helper()
	v, _ := s.Exec(t, "INFO", section).(string)
	return infoField(v, field)
}

// CommandStats parses INFO commandstats into command name -> calls, e.g.
// "set", "evalsha", "config|resetstat". Names are lower case as Redis
// reports them; commands never called are absent. CONFIG RESETSTAT (via
// Exec) zeroes the counters. The harness's own commands are counted too:
// every Exec and CommandStats adds one "hello" (connection handshake), and
// the INFO of a CommandStats call shows up in the next one.
func (s *Server) CommandStats(t testing.TB) map[string]int64 {
	t.Helper()
	info, _ := s.Exec(t, "INFO", "commandstats").(string)
	stats, err := parseCommandStats(info)
	if err != nil {
		t.Fatalf("redistest: %s INFO commandstats: %v", s.Addr(), err)
	}
	return stats
}

func parseCommandStats(info string) (map[string]int64, error) {
	stats := make(map[string]int64)
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, fields, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		found := false
		for _, kv := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("malformed line %q: %v", line, err)
				}
				stats[name] = n
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("no calls= in %q", line)
		}
	}
	return stats, nil
}
