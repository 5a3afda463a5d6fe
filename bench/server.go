package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// loopback is the only address the benchmark binds or dials.
const loopback = "127.0.0.1"

// server is one redis-server process started by the benchmark.
type server struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, valid once done is closed
}

func (s *server) addr() string { return net.JoinHostPort(loopback, strconv.Itoa(s.port)) }

// redisServerBinary is $REDIS_SERVER or redis-server from PATH.
func redisServerBinary() (string, error) {
	name := "redis-server"
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		name = p
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("redis-server not found (install Redis or set REDIS_SERVER): %w", err)
	}
	return path, nil
}

// startServers starts n redis-server processes in parallel on free loopback
// ports, without persistence, each in its own directory under root.
func startServers(root string, n int) ([]*server, error) {
	bin, err := redisServerBinary()
	if err != nil {
		return nil, err
	}
	servers := make([]*server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = startServer(bin, root)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopServers(servers)
		return nil, err
	}
	return servers, nil
}

// startServer starts one redis-server, retrying on another port when the
// chosen one turns out to be taken.
func startServer(bin, root string) (*server, error) {
	dir, err := os.MkdirTemp(root, "redis-")
	if err != nil {
		return nil, err
	}
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &server{port: port, dir: dir, done: make(chan struct{})}
		logf, err := os.Create(filepath.Join(dir, "redis.log"))
		if err != nil {
			return nil, err
		}
		s.cmd = exec.Command(bin,
			"--bind", loopback, "--port", strconv.Itoa(port), "--dir", dir,
			"--save", "", "--appendonly", "no", "--protected-mode", "no")
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		s.cmd.SysProcAttr = sysProcAttr()
		err = s.cmd.Start()
		logf.Close()
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		go func() { // owner: s; stop waits for done
			s.err = s.cmd.Wait()
			close(s.done)
		}()
		if last = waitReady(s, 10*time.Second); last == nil {
			return s, nil
		}
		s.stop()
	}
	return nil, fmt.Errorf("redis-server did not start: %w", last)
}

// freePort returns a loopback port that could be bound just now, drawn from
// below the usual ephemeral port ranges.
func freePort() (int, error) {
	var last error
	for i := 0; i < 100; i++ {
		port := 15000 + rand.IntN(17000)
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, strconv.Itoa(port)))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port: %w", last)
}

// waitReady waits until s answers PING and is the process we started.
func waitReady(s *server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	for {
		select {
		case <-s.done:
			return fmt.Errorf("redis-server on port %d exited: %v (log in %s)", s.port, s.err, s.dir)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		info, err := c.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if infoField(info, "process_id") == strconv.Itoa(s.cmd.Process.Pid) {
				return nil
			}
			err = errors.New("port answered by another process")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d not ready after %v: %w", s.port, timeout, err)
		}
		select {
		case <-s.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop terminates the process (SIGTERM, then SIGKILL after 5s) and waits for it.
func (s *server) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(termSignal)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func stopServers(servers []*server) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stop()
		}()
	}
	wg.Wait()
}

// newClient returns a go-redis client for s with default options, as a user
// would create it.
func newClient(s *server) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.addr()})
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

// serverCPU returns used_cpu_sys + used_cpu_user of the server, in seconds.
func serverCPU(ctx context.Context, c *redis.Client) (float64, error) {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	sys, err1 := strconv.ParseFloat(infoField(info, "used_cpu_sys"), 64)
	usr, err2 := strconv.ParseFloat(infoField(info, "used_cpu_user"), 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	return sys + usr, nil
}

// commandStats returns the calls per command from INFO commandstats. Calls
// made by Lua scripts (redis.call) are counted under their own command too.
func commandStats(ctx context.Context, c *redis.Client) (map[string]int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	stats := make(map[string]int64)
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("INFO commandstats: %q: %w", line, err)
				}
				stats[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return stats, nil
}

// housekeeping commands are the benchmark's own (or connection set-up) and
// are left out of command counts.
var housekeeping = map[string]bool{
	"info": true, "ping": true, "hello": true, "client|setinfo": true, "client|setname": true,
	"config|resetstat": true, "flushall": true, "script|load": true, "command": true,
	"command|docs": true, "client|maint_notifications": true,
}

// lockCommands is the number of calls between two commandstats snapshots,
// without housekeeping commands.
func lockCommands(before, after map[string]int64) int64 {
	var n int64
	for name, calls := range after {
		if housekeeping[name] {
			continue
		}
		n += calls - before[name]
	}
	return n
}
