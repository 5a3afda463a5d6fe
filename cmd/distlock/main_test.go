package main

// The CLI tests build the distlock binary once and run it as a user would,
// against real redis-server processes. The command that distlock runs is
// this test binary itself in child mode (DISTLOCK_TEST_CHILD), so that each
// test can choose exactly how the child behaves.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/redistest"
)

// binary is the distlock binary built for the tests.
var binary string

func TestMain(m *testing.M) {
	if mode := os.Getenv("DISTLOCK_TEST_CHILD"); mode != "" {
		os.Exit(child(mode))
	}
	dir, err := os.MkdirTemp("", "distlock-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "distlock")
	args := []string{"build", "-o", binary}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "go build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := redistest.RunAndCheckLeaks(m, "github.com/alicebob/miniredis")
	os.RemoveAll(dir)
	os.Exit(code)
}

// childExitOnSignal is the status of a child that caught a signal.
const childExitOnSignal = 7

// child is what the test binary does when distlock runs it:
//
//	exit:N     exit with status N
//	env        print the DISTLOCK_* variables, exit 0
//	hold       print "ready", then wait until stdin ends (exit 0) or a
//	           signal comes (print "got SIGNAL", exit childExitOnSignal)
//	stubborn   ignore SIGTERM, print "ready pid=PID", wait until killed
//	count      print "ready pid=PID", then "got SIGNAL" for each SIGINT, SIGHUP,
//	           SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH; on SIGTERM print
//	           "bye" and exit 0
//	checkdead:PID
//	           print "PID dead" or "PID alive", exit 0
//	del:ADDR KEY
//	           delete KEY on the Redis at ADDR, exit 0
//	append:F:S append S and a newline to file F, exit 0
//	selfkill   kill itself with SIGKILL
func child(mode string) int {
	name, arg, _ := strings.Cut(mode, ":")
	switch name {
	case "exit":
		var n int
		fmt.Sscan(arg, &n)
		return n
	case "env":
		for _, v := range []string{"DISTLOCK_KEY", "DISTLOCK_FENCE", "DISTLOCK_TOKEN"} {
			if val, ok := os.LookupEnv(v); ok {
				fmt.Printf("%s=%s\n", v, val)
			}
		}
		return 0
	case "hold":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		eof := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
		fmt.Println("ready")
		select {
		case s := <-sigs:
			fmt.Println("got", s)
			return childExitOnSignal
		case <-eof:
			return 0
		}
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Printf("ready pid=%d\n", os.Getpid())
		select {}
	case "count":
		sigs := make(chan os.Signal, 16)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGTERM)
		fmt.Printf("ready pid=%d\n", os.Getpid())
		for s := range sigs {
			if s == syscall.SIGTERM {
				fmt.Println("bye")
				return 0
			}
			fmt.Println("got", s)
		}
	case "checkdead":
		pid, _ := strconv.Atoi(arg)
		if alive(pid) {
			fmt.Println(pid, "alive")
		} else {
			fmt.Println(pid, "dead")
		}
		return 0
	case "del":
		addr, key, _ := strings.Cut(arg, " ")
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 99
		}
		defer c.Close()
		fmt.Fprintf(c, "*2\r\n$3\r\nDEL\r\n$%d\r\n%s\r\n", len(key), key)
		reply, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || reply != ":1\r\n" {
			fmt.Fprintf(os.Stderr, "DEL %s: %q %v\n", key, reply, err)
			return 99
		}
		return 0
	case "append":
		file, text, _ := strings.Cut(arg, ":")
		f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 99
		}
		defer f.Close()
		fmt.Fprintln(f, text)
		return 0
	case "selfkill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 98
}

// procTimeout bounds every distlock process a test starts.
const procTimeout = 30 * time.Second

// waitTimeout bounds every "must happen" wait.
const waitTimeout = 15 * time.Second

// buffer is an output buffer that can be waited on.
type buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newBuffer() *buffer { return &buffer{changed: make(chan struct{})} }

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor waits until the output contains s.
func (b *buffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		b.mu.Lock()
		has, ch := strings.Contains(b.b.String(), s), b.changed
		b.mu.Unlock()
		if has {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("output has no %q within %v; it is:\n%s", s, waitTimeout, b.String())
		}
	}
}

// proc is one distlock process.
type proc struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr *buffer
	done           chan struct{}
	code           int
}

// start starts distlock with args; its child (if any) runs in mode.
func start(t *testing.T, mode string, env []string, args ...string) *proc {
	t.Helper()
	return startWith(t, nil, mode, env, args...)
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...; comm may hold spaces and parentheses.
	rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// startWith is start with the process attributes of distlock given.
func startWith(t *testing.T, attr *syscall.SysProcAttr, mode string, env []string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	cmd := exec.CommandContext(ctx, binary, args...)
	// A race-built binary sleeps 1s at exit unless told not to; a race
	// found in it ends it with status 66 and a report on stderr.
	cmd.Env = append(append(os.Environ(), "DISTLOCK_TEST_CHILD="+mode, "REDIS_URL=", "GORACE=atexit_sleep_ms=0 halt_on_error=1"), env...)
	p := &proc{cmd: cmd, stdout: newBuffer(), stderr: newBuffer(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.SysProcAttr = attr
	// A COMMAND left running (a bug under test) keeps the output pipes
	// open: do not wait for it.
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		defer cancel()
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		_ = err
	}()
	t.Cleanup(func() {
		_ = p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(waitTimeout):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for distlock to exit and returns its exit status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(waitTimeout):
		t.Fatalf("distlock %v did not exit within %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Args[1:], waitTimeout, p.stdout, p.stderr)
		return -1
	}
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// runDistlock runs distlock to the end and returns its exit status and
// output.
func runDistlock(t *testing.T, mode string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, mode, env, args...)
	_ = p.stdin.Close()
	code = p.wait(t)
	return code, p.stdout.String(), p.stderr.String()
}

// self is the path of this test binary, run by distlock as the child.
func self(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// oneLine asserts that s is a single line of text.
func oneLine(t *testing.T, s string) {
	t.Helper()
	if strings.Count(strings.TrimRight(s, "\n"), "\n") != 0 || strings.TrimSpace(s) == "" {
		t.Errorf("want one line, got %q", s)
	}
}
