package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/distlock/distlock"
)

// stallHeld is the stall worker's first line: it holds the lock.
type stallHeld struct {
	Fence        int64
	FirstWriteOK bool
}

// stallReport is the stall worker's second line, written after it noticed
// that it had been stopped (a gap in its own clock) and was resumed.
type stallReport struct {
	Gap             time.Duration // how long the worker was stopped
	DoneClosedFirst bool          // Done was already closed at the first look after resume
	ErrFirst        string        // Err() at the first look after resume ("" = nil)
	StaleWriteOK    bool          // the store accepted its fenced write after resume
	DoneAfter       time.Duration // from the first look to Done closing
}

// stallWorker obtains cfg.Keys[0] with fencing and auto-refresh, makes one
// fenced write, reports, and then watches its own clock every millisecond.
// When the clock jumps by more than the TTL (the process was SIGSTOPped and
// SIGCONTed) it looks at Done and Err first thing, then tries the fenced
// write a holder would make, and reports.
func stallWorker(cfg workerConfig) error {
	svc, err := newLockService(cfg.Mode, cfg.LockAddrs, distlock.WithTTL(cfg.TTL))
	if err != nil {
		return err
	}
	defer svc.close()
	store := newClient(cfg.StoreAddr)
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	key := string(cfg.Keys[0])
	l, err := svc.obtain(ctx, key, distlock.WithFencing(), distlock.WithAutoRefresh(), distlock.WithBlocking())
	if err != nil {
		return fmt.Errorf("obtain: %w", err)
	}
	defer l.Release(context.Background())
	ok, err := writeFenced(ctx, store, key, l.Fence())
	if err != nil {
		return err
	}
	// The clock reading is taken before the line goes out: the parent may
	// stop this process the moment it reads the line.
	last := time.Now()
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(stallHeld{Fence: l.Fence(), FirstWriteOK: ok}); err != nil {
		return err
	}
	for {
		time.Sleep(time.Millisecond)
		now := time.Now()
		gap := now.Sub(last)
		last = now
		if gap < cfg.TTL {
			if ctx.Err() != nil {
				return fmt.Errorf("never stopped: %w", ctx.Err())
			}
			continue
		}
		// First thing after the resume: does the holder still believe it
		// holds the lock?
		var rep stallReport
		rep.Gap = gap
		select {
		case <-l.Done():
			rep.DoneClosedFirst = true
		default:
		}
		if err := l.Err(); err != nil {
			rep.ErrFirst = err.Error()
		}
		looked := time.Now()
		rep.StaleWriteOK, err = writeFenced(ctx, store, key, l.Fence())
		if err != nil {
			return err
		}
		select {
		case <-l.Done():
			rep.DoneAfter = time.Since(looked)
		case <-time.After(10 * time.Second):
			rep.DoneAfter = -1
		}
		return enc.Encode(rep)
	}
}
