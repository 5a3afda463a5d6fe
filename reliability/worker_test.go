package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distlock/distlock"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// workerEnv carries a worker's JSON config; TestMain runs the worker instead
// of the tests when it is set.
const workerEnv = "DISTLOCK_RELIABILITY_WORKER"

// Deployment modes a worker can lock on.
const (
	modeSingle  = "single"  // one redis-server (LockAddrs[0])
	modeCluster = "cluster" // a Redis Cluster seeded with LockAddrs
	modeRedlock = "redlock" // independent nodes, one per LockAddrs entry
)

// workerConfig tells a worker process what to do.
type workerConfig struct {
	Job        string        // "checker" or "stall"
	Mode       string        // modeSingle, modeCluster, modeRedlock
	LockAddrs  []string      // lock servers
	StoreAddr  string        // the guarded resource (a separate server)
	Keys       [][]byte      // lock keys, any bytes (base64 in JSON)
	Goroutines int           // concurrent lockers in this process
	Duration   time.Duration // how long to run
	TTL        time.Duration // lock TTL
	Fencing    bool          // obtain with WithFencing and do fenced writes
	// OwnPrefix gives each worker process its own key prefix, so that the
	// processes do not exclude each other: the checker's self-test.
	OwnPrefix bool
	// Kind is what the checker takes: "" exclusive locks; kindLimit
	// permits of a WithLimit(Limit) semaphore (every goroutine); kindRW a
	// read-write lock (goroutine 0 of every 4 writes with a plain lock,
	// the others read with WithShared).
	Kind  string
	Limit int
	// Barging makes blocked callers barge (WithFairness(false)) instead of
	// waiting their turn (WithFairness(true), the library's default, which
	// the checker sets explicitly all the same).
	Barging bool
}

// Kinds of lock the checker can take (workerConfig.Kind).
const (
	kindLimit = "limit"
	kindRW    = "rw"
)

// workerResult is what a checker worker reports on stdout as one JSON line.
type workerResult struct {
	Sections      map[string]int64 // critical sections per key (hex)
	Overlaps      int64            // a section found another one inside
	FenceRejected int64            // fenced writes the store refused
	StaleAccepted int64            // fenced writes accepted although a newer fence had been issued before them
	LostInSection int64            // Err() reported the lock lost at the end of a section
	NotObtained   int64            // attempts that gave up on contention
	Errors        int64            // other errors (Redis errors, ...)
	ErrSamples    []string         // the first few of them
	// Shared counts the sections under a shared lease (a reader's or a
	// permit's) per key (hex); they write no stock.
	Shared map[string]int64
	// MostShared is the most shared holders of one key seen inside at
	// once (readers, or permits).
	MostShared int64
}

func (r *workerResult) add(o workerResult) {
	if r.Sections == nil {
		r.Sections = make(map[string]int64)
	}
	for k, v := range o.Sections {
		r.Sections[k] += v
	}
	if r.Shared == nil {
		r.Shared = make(map[string]int64)
	}
	for k, v := range o.Shared {
		r.Shared[k] += v
	}
	r.MostShared = max(r.MostShared, o.MostShared)
	r.Overlaps += o.Overlaps
	r.FenceRejected += o.FenceRejected
	r.StaleAccepted += o.StaleAccepted
	r.LostInSection += o.LostInSection
	r.NotObtained += o.NotObtained
	r.Errors += o.Errors
	for _, s := range o.ErrSamples {
		if len(r.ErrSamples) < 10 {
			r.ErrSamples = append(r.ErrSamples, s)
		}
	}
}

func (r *workerResult) total() int64 {
	var n int64
	for _, v := range r.Sections {
		n += v
	}
	for _, v := range r.Shared {
		n += v
	}
	return n
}

// runWorker is the body of a worker process; it returns the exit code.
func runWorker(raw string) int {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "worker: bad config: %v\n", err)
		return 2
	}
	var err error
	switch cfg.Job {
	case "checker":
		err = checkerWorker(cfg)
	case "stall":
		err = stallWorker(cfg)
	case "fairwait":
		err = fairWaitWorker(cfg)
	default:
		err = fmt.Errorf("unknown job %q", cfg.Job)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		return 1
	}
	return 0
}

// clientTimeout is the dial/read/write timeout of every client here.
const clientTimeout = time.Second

func noMaint() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// newClient returns a plain client for addr with the suite's settings.
func newClient(addr string, opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{
		Addr:                     addr,
		DialTimeout:              clientTimeout,
		ReadTimeout:              clientTimeout,
		WriteTimeout:             clientTimeout,
		MaxRetries:               -1,
		DialerRetries:            1,
		MaintNotificationsConfig: noMaint(),
	}
	for _, opt := range opts {
		opt(o)
	}
	return redis.NewClient(o)
}

// lockService is a Locker or a Redlock plus what is needed to read the
// fence counters behind it and to close its clients.
type lockService struct {
	obtain  func(ctx context.Context, key string, opts ...distlock.Option) (*distlock.Lock, error)
	clients []redis.UniversalClient
}

func newLockService(mode string, addrs []string, opts ...distlock.Option) (*lockService, error) {
	s := &lockService{}
	switch mode {
	case modeSingle:
		c := newClient(addrs[0])
		s.clients = []redis.UniversalClient{c}
		s.obtain = distlock.New(c, opts...).Obtain
	case modeCluster:
		c := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                    addrs,
			DialTimeout:              clientTimeout,
			ReadTimeout:              clientTimeout,
			WriteTimeout:             clientTimeout,
			DialerRetries:            1,
			MaintNotificationsConfig: noMaint(),
		})
		s.clients = []redis.UniversalClient{c}
		s.obtain = distlock.New(c, opts...).Obtain
	case modeRedlock:
		for _, a := range addrs {
			s.clients = append(s.clients, newClient(a, func(o *redis.Options) {
				o.ReadTimeout = 200 * time.Millisecond
				o.WriteTimeout = 200 * time.Millisecond
			}))
		}
		// The default 50ms node timeout is tight for a 2-core machine
		// running the race detector, five servers and several workers.
		opts = append([]distlock.Option{distlock.WithNodeTimeout(200 * time.Millisecond)}, opts...)
		s.obtain = distlock.NewRedlock(s.clients, opts...).Obtain
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	return s, nil
}

func (s *lockService) close() {
	for _, c := range s.clients {
		_ = c.Close()
	}
}

// fenceCounter returns the highest fence issued so far for key: the
// counter the library keeps next to the lock (see keys.go), the maximum
// over all nodes for Redlock. A node that cannot answer counts as 0.
func (s *lockService) fenceCounter(ctx context.Context, key string) int64 {
	var hi int64
	for _, c := range s.clients {
		n, err := c.Get(ctx, fenceKeyOf(key)).Int64()
		if err == nil && n > hi {
			hi = n
		}
	}
	return hi
}

// The key layout of keys.go, repeated here so that the suite can look at
// what the library wrote: prefix{escaped key} and prefix{escaped key}:fence.
var keyEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

func lockKeyOf(key string) string {
	return distlock.DefaultKeyPrefix + "{" + keyEscaper.Replace(key) + "}"
}

func fenceKeyOf(key string) string { return lockKeyOf(key) + ":fence" }

// The guarded resource lives on its own redis-server. Per lock key K (hex
// encoded, so any bytes work) it holds
//
//	stock:K   a counter updated by a non-atomic GET + SET (the stock scenario)
//	inside:K  how many holders are inside their critical section right now
//	fence:K   the highest fence the store has accepted
//
// A fenced write is accepted only with a fence strictly above the highest
// seen: each critical section carries its own fence, so an equal fence is a
// reused one and a lower one comes from a stale holder.
var fencedWrite = redis.NewScript(`
local hi = tonumber(redis.call('GET', KEYS[1]) or '0')
local f = tonumber(ARGV[1])
if f <= hi then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

func stockKey(key string) string   { return "stock:" + hex.EncodeToString([]byte(key)) }
func insideKey(key string) string  { return "inside:" + hex.EncodeToString([]byte(key)) }
func readersKey(key string) string { return "readers:" + hex.EncodeToString([]byte(key)) }

// enter counts a holder in (INCR KEYS[1]) and reads, in the same atomic
// step, how many of the other kind are inside (KEYS[2]): of two holders
// whose sections overlap, the later to enter sees the earlier.
var enter = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
return {n, tonumber(redis.call('GET', KEYS[2]) or '0')}
`)

// sharedSection is one section under a shared lease: a reader's (kindRW),
// which no writer may share, or a permit's (kindLimit), which at most
// limit holders may share. It writes no stock.
func sharedSection(ctx context.Context, store *redis.Client, l *distlock.Lock, limit int, res *workerResult, mu *sync.Mutex) error {
	key := l.Key()
	mine, other := readersKey(key), insideKey(key) // a reader: no writer inside
	if limit > 0 {
		mine, other = insideKey(key), readersKey(key) // a permit: readersKey stays 0
	}
	v, err := enter.Run(ctx, store, []string{mine, other}).Int64Slice()
	if err != nil {
		return fmt.Errorf("enter: %w", err)
	}
	defer store.Decr(context.WithoutCancel(ctx), mine)
	overlap := v[1] != 0 || (limit > 0 && v[0] > int64(limit))
	if d := rand.N(300 * time.Microsecond); d > 0 {
		time.Sleep(d) // the work
	}
	lost := l.Err() != nil

	mu.Lock()
	defer mu.Unlock()
	res.Shared[hex.EncodeToString([]byte(key))]++
	res.MostShared = max(res.MostShared, v[0])
	if overlap {
		res.Overlaps++
	}
	if lost {
		res.LostInSection++
	}
	return nil
}
func storeFenceKey(key string) string {
	return "fence:" + hex.EncodeToString([]byte(key))
}

// writeFenced offers fence to the store for key and reports whether the
// store accepted it.
func writeFenced(ctx context.Context, store *redis.Client, key string, fence int64) (bool, error) {
	n, err := fencedWrite.Run(ctx, store, []string{storeFenceKey(key)}, fence).Int64()
	return n == 1, err
}

// section is one critical section: overlap check, non-atomic
// read-modify-write of the stock counter, and (with fencing) a fenced
// write, whose staleness is judged against the fence counter read just
// before it.
func section(ctx context.Context, svc *lockService, store *redis.Client, l *distlock.Lock, fencing bool, res *workerResult, mu *sync.Mutex) error {
	key := l.Key()
	var overlap, rejected, stale bool
	in, err := enter.Run(ctx, store, []string{insideKey(key), readersKey(key)}).Int64Slice()
	if err != nil {
		return fmt.Errorf("enter: %w", err)
	}
	overlap = in[0] != 1 || in[1] != 0 // another writer, or a reader, inside
	defer store.Decr(context.WithoutCancel(ctx), insideKey(key))

	v, err := store.Get(ctx, stockKey(key)).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("get stock: %w", err)
	}
	// Widen the window between read and write, as real work would.
	if d := rand.N(300 * time.Microsecond); d > 0 {
		time.Sleep(d)
	}
	if err := store.Set(ctx, stockKey(key), v+1, 0).Err(); err != nil {
		return fmt.Errorf("set stock: %w", err)
	}
	if fencing {
		// Redlock nodes also count the fences of attempts that missed the
		// quorum, so their counters do not tell which fences were handed
		// out: staleness is judged on single nodes and clusters only.
		issued := int64(0)
		if len(svc.clients) == 1 {
			issued = svc.fenceCounter(ctx, key)
		}
		ok, err := writeFenced(ctx, store, key, l.Fence())
		if err != nil {
			return fmt.Errorf("fenced write: %w", err)
		}
		rejected = !ok
		stale = ok && issued > l.Fence()
	}
	lost := l.Err() != nil

	mu.Lock()
	defer mu.Unlock()
	res.Sections[hex.EncodeToString([]byte(key))]++
	if overlap {
		res.Overlaps++
	}
	if rejected {
		res.FenceRejected++
	}
	if stale {
		res.StaleAccepted++
	}
	if lost {
		res.LostInSection++
	}
	return nil
}

// checkerWorker runs cfg.Goroutines lockers for cfg.Duration and prints a
// workerResult. Even goroutines wait with WithBlocking (and auto-refresh),
// odd ones retry with a limited exponential backoff.
func checkerWorker(cfg workerConfig) error {
	base := []distlock.Option{distlock.WithTTL(cfg.TTL)}
	if cfg.Fencing {
		base = append(base, distlock.WithFencing())
	}
	if cfg.OwnPrefix {
		base = append(base, distlock.WithKeyPrefix(fmt.Sprintf("p%d:", os.Getpid())))
	}
	if cfg.Mode != modeRedlock {
		base = append(base, distlock.WithFairness(!cfg.Barging))
	}
	svc, err := newLockService(cfg.Mode, cfg.LockAddrs, base...)
	if err != nil {
		return err
	}
	defer svc.close()
	store := newClient(cfg.StoreAddr)
	defer store.Close()

	res := workerResult{Sections: make(map[string]int64), Shared: make(map[string]int64)}
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.Errors++
		if len(res.ErrSamples) < 5 {
			res.ErrSamples = append(res.ErrSamples, err.Error())
		}
	}
	end := time.Now().Add(cfg.Duration)
	var wg sync.WaitGroup
	for g := range cfg.Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := []distlock.Option{distlock.WithBlocking(), distlock.WithAutoRefresh()}
			if g%2 == 1 {
				opts = []distlock.Option{distlock.WithRetry(distlock.LimitRetry(distlock.ExponentialBackoff(time.Millisecond, 20*time.Millisecond), 20))}
			}
			shared, limit := false, 0
			switch cfg.Kind {
			case kindLimit:
				shared, limit = true, cfg.Limit
				opts = append(opts, distlock.WithLimit(limit))
			case kindRW:
				if g%4 != 0 {
					shared = true
					opts = append(opts, distlock.WithShared())
				}
			}
			for time.Now().Before(end) {
				key := string(cfg.Keys[rand.IntN(len(cfg.Keys))])
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				l, err := svc.obtain(ctx, key, opts...)
				switch {
				case errors.Is(err, distlock.ErrNotObtained):
					mu.Lock()
					res.NotObtained++
					mu.Unlock()
				case err != nil:
					fail(err)
				case shared:
					if err := sharedSection(ctx, store, l, limit, &res, &mu); err != nil {
						fail(err)
					}
					if err := l.Release(ctx); err != nil {
						fail(fmt.Errorf("release: %w", err))
					}
				default:
					if err := section(ctx, svc, store, l, cfg.Fencing, &res, &mu); err != nil {
						fail(err)
					}
					if err := l.Release(ctx); err != nil {
						fail(fmt.Errorf("release: %w", err))
					}
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// worker is a running worker process.
type worker struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stdin  *os.File // write end of the worker's stdin, nil unless asked for
	stderr *bytes.Buffer
	done   chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result once done is closed
}

// startWorker starts this test binary as a worker with cfg; it is killed
// and waited for in t.Cleanup if it is still running.
func startWorker(t testing.TB, cfg workerConfig, withStdin bool) *worker {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerEnv+"="+string(raw))
	w := &worker{cmd: cmd, stderr: new(bytes.Buffer), done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: w.stderr}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	w.stdout = bufio.NewReader(pr)
	if withStdin {
		ir, iw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = ir
		w.stdin = iw
		defer ir.Close()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() { // owner: the test; Cleanup waits for done
		w.err = cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			_ = cmd.Process.Kill()
			<-w.done
		}
		pr.Close()
		if w.stdin != nil {
			w.stdin.Close()
		}
	})
	return w
}

// lockedWriter lets cmd's stderr copier and the test read the buffer safely.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// line reads one line of the worker's stdout, failing the test after
// timeout or when the worker exits first.
func (w *worker) line(t testing.TB, timeout time.Duration) string {
	t.Helper()
	type lineErr struct {
		s   string
		err error
	}
	ch := make(chan lineErr, 1)
	go func() { // owner: this call; ends when a line arrives or the pipe closes
		s, err := w.stdout.ReadString('\n')
		ch <- lineErr{s, err}
	}()
	select {
	case le := <-ch:
		if le.err != nil {
			<-w.done
			t.Fatalf("worker ended without output (%v): %v\nstderr:\n%s", le.err, w.err, w.stderrText())
		}
		return strings.TrimSpace(le.s)
	case <-time.After(timeout):
		w.dump()
		<-ch
		t.Fatalf("no output from worker after %v\nstderr:\n%s", timeout, w.stderrText())
	}
	return ""
}

// dump ends a stuck worker with SIGQUIT, so that its goroutine stacks land
// in its stderr, and SIGKILL if that does not end it.
func (w *worker) dump() {
	_ = w.cmd.Process.Signal(syscall.SIGCONT)
	_ = w.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

func (w *worker) stderrText() string {
	lw := w.cmd.Stderr.(*lockedWriter)
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.String()
}

// wait waits for the worker to exit successfully.
func (w *worker) wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(timeout):
		w.dump()
		t.Fatalf("worker still running after %v\nstderr:\n%s", timeout, w.stderrText())
	}
	if w.err != nil {
		t.Fatalf("worker failed: %v\nstderr:\n%s", w.err, w.stderrText())
	}
}
