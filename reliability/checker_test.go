package reliability_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// soakEnv, when set to a duration (e.g. DISTLOCK_SOAK=5m), makes every
// checker scenario run that long instead of its short CI length.
const soakEnv = "DISTLOCK_SOAK"

// runFor is how long each checker scenario runs: short by default,
// $DISTLOCK_SOAK in a soak run.
func runFor(t testing.TB, short time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(soakEnv)
	if v == "" {
		return short
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 5m", soakEnv, v)
	}
	return d
}

// soaking reports whether a soak length was asked for.
func soaking() bool { return os.Getenv(soakEnv) != "" }

// scenario is one run of the mutual-exclusion checker.
type scenario struct {
	mode       string
	lockAddrs  []string
	store      *redistest.Server
	keys       [][]byte
	procs      int
	goroutines int
	duration   time.Duration
	ttl        time.Duration
	fencing    bool
	ownPrefix  bool
	kind       string // workerConfig.Kind
	limit      int
	barging    bool // blocked callers barge instead of waiting their turn
	// during, when set, runs in the test goroutine while the workers run
	// (fault injection); it returns a description of what it injected.
	during func(ctx context.Context) string
}

// outcome is the combined result of a scenario.
type outcome struct {
	workerResult
	LostUpdates int64 // critical sections whose stock update is missing
	Faults      string
}

// runChecker starts sc.procs worker processes, waits for them and checks
// the stock counters in the store against the sections they counted.
func runChecker(t *testing.T, sc scenario) outcome {
	t.Helper()
	cfg := workerConfig{
		Job:        "checker",
		Mode:       sc.mode,
		LockAddrs:  sc.lockAddrs,
		StoreAddr:  sc.store.Addr(),
		Keys:       sc.keys,
		Goroutines: sc.goroutines,
		Duration:   sc.duration,
		TTL:        sc.ttl,
		Fencing:    sc.fencing,
		OwnPrefix:  sc.ownPrefix,
		Kind:       sc.kind,
		Limit:      sc.limit,
		Barging:    sc.barging,
	}
	sc.store.Exec(t, "FLUSHALL") // a fresh resource for every run
	workers := make([]*worker, sc.procs)
	for i := range workers {
		workers[i] = startWorker(t, cfg, false)
	}
	var out outcome
	if sc.during != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sc.duration)
		out.Faults = sc.during(ctx)
		cancel()
	}
	var mu sync.Mutex
	for _, w := range workers {
		var r workerResult
		if err := json.Unmarshal([]byte(w.line(t, sc.duration+60*time.Second)), &r); err != nil {
			t.Fatalf("worker result: %v", err)
		}
		w.wait(t, 10*time.Second)
		mu.Lock()
		out.add(r)
		mu.Unlock()
	}

	store := sc.store.Client(t)
	ctx := context.Background()
	for _, k := range sc.keys {
		key := string(k)
		got, err := store.Get(ctx, stockKey(key)).Int64()
		if err != nil && err != redis.Nil {
			t.Fatalf("read stock: %v", err)
		}
		want := out.Sections[hex.EncodeToString(k)]
		if got > want {
			t.Errorf("key %q: stock %d above the %d sections counted: the checker is broken", key, got, want)
		}
		out.LostUpdates += want - got
		if inside, _ := store.Get(ctx, insideKey(key)).Int64(); inside != 0 {
			t.Errorf("key %q: inside counter %d after the run, want 0", key, inside)
		}
		if readers, _ := store.Get(ctx, readersKey(key)).Int64(); readers != 0 {
			t.Errorf("key %q: readers counter %d after the run, want 0", key, readers)
		}
	}
	var shared int64
	for _, v := range out.Shared {
		shared += v
	}
	t.Logf("RESULT %s: procs=%d goroutines/proc=%d keys=%d duration=%v ttl=%v fencing=%v fair=%v faults=%q: "+
		"sections=%d (shared %d, most shared at once %d) lost_updates=%d overlaps=%d fence_rejected=%d stale_accepted=%d lost_in_section=%d not_obtained=%d errors=%d %v",
		t.Name(), sc.procs, sc.goroutines, len(sc.keys), sc.duration, sc.ttl, sc.fencing, !sc.barging && sc.mode != modeRedlock, out.Faults,
		out.total(), shared, out.MostShared, out.LostUpdates, out.Overlaps, out.FenceRejected, out.StaleAccepted, out.LostInSection,
		out.NotObtained, out.Errors, out.ErrSamples)
	if out.total() == 0 {
		t.Fatalf("no critical section ran (errors: %v)", out.ErrSamples)
	}
	return out
}

// requireExclusive fails the test on any violation of mutual exclusion.
func requireExclusive(t *testing.T, out outcome) {
	t.Helper()
	if out.LostUpdates != 0 || out.Overlaps != 0 || out.FenceRejected != 0 || out.StaleAccepted != 0 {
		t.Errorf("mutual exclusion violated: lost_updates=%d overlaps=%d fence_rejected=%d stale_accepted=%d",
			out.LostUpdates, out.Overlaps, out.FenceRejected, out.StaleAccepted)
	}
	if out.LostInSection != 0 {
		t.Errorf("%d sections ended with the lock reported lost, with no fault injected", out.LostInSection)
	}
	if out.Errors != 0 {
		t.Errorf("%d errors, e.g. %v", out.Errors, out.ErrSamples)
	}
}

// plainKeys returns n ordinary keys.
func plainKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte("stock-" + strconv.Itoa(i))
	}
	return keys
}

// awkwardKeys are lock keys with hash-tag characters, percent signs and
// binary bytes; on a Cluster they spread over several slots.
func awkwardKeys() [][]byte {
	return [][]byte{
		[]byte("order-1"),
		[]byte("user:{42}"),
		[]byte("}{"),
		[]byte("{"),
		[]byte("}"),
		[]byte("{}"),
		[]byte("a}b{c"),
		[]byte("%7B"),
		{0x00, 0xff, 0xfe, '{', 0x01},
		{0xc3, 0x28, '}', 0x00},
		[]byte("日本{語}"),
		[]byte("stock-7"),
	}
}

func TestCheckerSingleNode(t *testing.T) {
	srv := redistest.Start(t)
	store := redistest.Start(t)
	for _, fencing := range []bool{false, true} {
		t.Run("fencing="+strconv.FormatBool(fencing), func(t *testing.T) {
			out := runChecker(t, scenario{
				mode:       modeSingle,
				lockAddrs:  []string{srv.Addr()},
				store:      store,
				keys:       plainKeys(3),
				procs:      3,
				goroutines: 4,
				duration:   runFor(t, 2*time.Second),
				ttl:        2 * time.Second,
				fencing:    fencing,
			})
			requireExclusive(t, out)
		})
	}
}

func TestCheckerCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	store := redistest.Start(t)
	keys := awkwardKeys()
	requireSpread(t, c, keys)
	out := runChecker(t, scenario{
		mode:       modeCluster,
		lockAddrs:  c.Addrs(),
		store:      store,
		keys:       keys,
		procs:      3,
		goroutines: 4,
		duration:   runFor(t, 3*time.Second),
		ttl:        2 * time.Second,
		fencing:    true,
	})
	requireExclusive(t, out)
}

// TestCheckerSemaphore: 4 processes × 4 goroutines take permits of
// WithLimit(3) semaphores: no more than 3 holders of a key are ever inside,
// and 3 are (the semaphore admits n).
func TestCheckerSemaphore(t *testing.T) {
	for _, mode := range []string{modeSingle, modeCluster} {
		t.Run(mode, func(t *testing.T) {
			addrs, keys := checkerDeployment(t, mode)
			out := runChecker(t, scenario{
				mode:       mode,
				lockAddrs:  addrs,
				store:      redistest.Start(t),
				keys:       keys,
				procs:      4,
				goroutines: 4,
				duration:   runFor(t, 3*time.Second),
				ttl:        2 * time.Second,
				kind:       kindLimit,
				limit:      3,
			})
			requireExclusive(t, out)
			if out.MostShared != 3 {
				t.Errorf("most permit holders inside at once: %d, want 3", out.MostShared)
			}
		})
	}
}

// TestCheckerReadWrite: 4 processes × 4 goroutines, one in four a writer
// (fenced stock updates, as in the plain checker), the others readers: a
// writer never shares a key with a reader or another writer, no update is
// lost, and readers do share.
func TestCheckerReadWrite(t *testing.T) {
	for _, mode := range []string{modeSingle, modeCluster} {
		t.Run(mode, func(t *testing.T) {
			addrs, keys := checkerDeployment(t, mode)
			out := runChecker(t, scenario{
				mode:       mode,
				lockAddrs:  addrs,
				store:      redistest.Start(t),
				keys:       keys,
				procs:      4,
				goroutines: 4,
				duration:   runFor(t, 3*time.Second),
				ttl:        2 * time.Second,
				fencing:    true,
				kind:       kindRW,
			})
			requireExclusive(t, out)
			if out.MostShared < 2 {
				t.Errorf("most readers inside at once: %d, want at least 2", out.MostShared)
			}
			if len(out.Sections) == 0 {
				t.Errorf("no writer section ran")
			}
		})
	}
}

// checkerDeployment starts the lock servers of mode and returns their
// addresses and the keys to lock: 2 plain keys on a single node, awkward
// keys spread over the slots on a Cluster.
func checkerDeployment(t *testing.T, mode string) ([]string, [][]byte) {
	if mode == modeCluster {
		c := redistest.StartCluster(t, 3)
		keys := awkwardKeys()[:4]
		requireSpread(t, c, keys)
		return c.Addrs(), keys
	}
	return []string{redistest.Start(t).Addr()}, plainKeys(2)
}

// requireSpread checks that the keys' locks land on more than one cluster
// node, so that the cluster scenario exercises routing.
func requireSpread(t *testing.T, c *redistest.Cluster, keys [][]byte) {
	t.Helper()
	slots := make(map[int64]bool)
	for _, k := range keys {
		slot, ok := c.Nodes[0].Exec(t, "CLUSTER", "KEYSLOT", lockKeyOf(string(k))).(int64)
		if !ok {
			t.Fatal("CLUSTER KEYSLOT: unexpected reply")
		}
		slots[slot/(16384/3+1)] = true
	}
	if len(slots) < 2 {
		t.Fatalf("all keys hash to one node's range; pick other keys")
	}
}

// TestCheckerDetectsViolations shows that the checker can fail: worker
// processes that lock under different key prefixes do not exclude each
// other, and the checker must see lost updates, overlaps and rejected
// fences.
func TestCheckerDetectsViolations(t *testing.T) {
	srv := redistest.Start(t)
	store := redistest.Start(t)
	out := runChecker(t, scenario{
		mode:       modeSingle,
		lockAddrs:  []string{srv.Addr()},
		store:      store,
		keys:       plainKeys(1),
		procs:      3,
		goroutines: 2,
		duration:   time.Second,
		ttl:        2 * time.Second,
		fencing:    true,
		ownPrefix:  true,
	})
	if out.LostUpdates == 0 || out.Overlaps == 0 || out.FenceRejected == 0 {
		t.Errorf("checker missed violations: lost_updates=%d overlaps=%d fence_rejected=%d",
			out.LostUpdates, out.Overlaps, out.FenceRejected)
	}
}
