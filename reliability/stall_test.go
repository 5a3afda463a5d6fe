package reliability_test

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// stallTrial stops a holder process (SIGSTOP) for longer than its TTL,
// lets another holder take the lock and write, resumes the first process
// (SIGCONT) and returns what it saw first thing after resuming.
func stallTrial(t *testing.T, mode string, lockAddrs []string, store *redistest.Server, svc *lockService, key string, ttl time.Duration) stallReport {
	t.Helper()
	w := startWorker(t, workerConfig{
		Job: "stall", Mode: mode, LockAddrs: lockAddrs, StoreAddr: store.Addr(),
		Keys: [][]byte{[]byte(key)}, TTL: ttl,
	}, false)
	var held stallHeld
	if err := json.Unmarshal([]byte(w.line(t, 30*time.Second)), &held); err != nil {
		t.Fatal(err)
	}
	if !held.FirstWriteOK {
		t.Fatalf("holder's first fenced write (fence %d) was refused", held.Fence)
	}
	pid := w.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()

	// Another holder takes over once the stopped holder's TTL runs out.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := svc.obtain(ctx, key, distlock.WithTTL(10*time.Second), distlock.WithFencing(), distlock.WithBlocking())
	if err != nil {
		t.Fatalf("take over from the stopped holder: %v", err)
	}
	defer l.Release(context.Background())
	if l.Fence() <= held.Fence {
		t.Errorf("new holder's fence %d not above the stopped holder's %d", l.Fence(), held.Fence)
	}
	ok, err := writeFenced(ctx, newClientT(t, store.Addr()), key, l.Fence())
	if err != nil || !ok {
		t.Fatalf("new holder's fenced write refused: ok=%v err=%v", ok, err)
	}

	// The fault: the holder stays stopped for at least twice its TTL (the
	// worker recognises its resume by a clock gap of at least one TTL).
	<-time.After(time.Until(stoppedAt.Add(2 * ttl)))
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	var rep stallReport
	if err := json.Unmarshal([]byte(w.line(t, 30*time.Second)), &rep); err != nil {
		t.Fatal(err)
	}
	w.wait(t, 10*time.Second)
	if rep.ErrFirst == "" {
		t.Errorf("stale holder believed it still held the lock right after resuming (Err() == nil, stopped %v)", rep.Gap)
	}
	if !rep.DoneClosedFirst {
		t.Errorf("stale holder's Done was still open at the first look after resuming (Err: %q): a holder "+
			"selecting on Done would still believe it holds the lock", rep.ErrFirst)
	}
	if rep.StaleWriteOK {
		t.Errorf("store accepted the stale holder's fence %d after fence %d", held.Fence, l.Fence())
	}
	if rep.DoneAfter < 0 {
		t.Errorf("stale holder's Done never closed")
	}
	return rep
}

// newClientT returns a client closed in t.Cleanup.
func newClientT(t testing.TB, addr string) *redis.Client {
	c := newClient(addr)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestStalledHolder: the holder process is SIGSTOPped past its TTL; another
// holder takes over; after SIGCONT the stale holder must see its lock lost
// (Err) before its next write, and the store must refuse its fence.
func TestStalledHolder(t *testing.T) {
	trials := 5
	if soaking() {
		trials = 30
	}
	srv := redistest.Start(t)
	store := redistest.Start(t)
	svc, err := newLockService(modeSingle, []string{srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	runStallTrials(t, trials, modeSingle, []string{srv.Addr()}, store, svc)
}

func runStallTrials(t *testing.T, trials int, mode string, addrs []string, store *redistest.Server, svc *lockService) {
	t.Helper()
	const ttl = 600 * time.Millisecond
	doneFirst, errFirst, staleOK := 0, 0, 0
	var maxDoneAfter time.Duration
	for i := range trials {
		rep := stallTrial(t, mode, addrs, store, svc, "stall-"+mode+"-"+string(rune('a'+i%26)), ttl)
		if rep.DoneClosedFirst {
			doneFirst++
		}
		if rep.ErrFirst != "" {
			errFirst++
		}
		if !rep.DoneClosedFirst {
			t.Errorf("stale holder's Done was still open at the first look after resuming (Err: %q): a holder "+
				"selecting on Done would still believe it holds the lock", rep.ErrFirst)
		}
		if rep.StaleWriteOK {
			staleOK++
		}
		maxDoneAfter = max(maxDoneAfter, rep.DoneAfter)
	}
	t.Logf("RESULT %s: trials=%d ttl=%v: Err()!=nil at first look after resume %d/%d, Done already closed at first look %d/%d, "+
		"Done closed at most %v after the first look, stale fenced writes accepted %d/%d",
		t.Name(), trials, ttl, errFirst, trials, doneFirst, trials, maxDoneAfter, staleOK, trials)
}
