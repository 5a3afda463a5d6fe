package distlock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Hand-over inside a process. When a Locker's holder releases a lock for
// which a caller of the same Locker is blocked (the head of the key's
// room, parked waiting for a wake-up), the release hands the lock straight
// to that caller in one script: the lock changes token without ever being
// free, and the waiter's Obtain returns without a round trip of its own. To
// keep other processes from starving, at most maxHandovers hand-overs
// follow each other; the next release is a plain one that publishes, and
// every blocked process competes for the lock again.

// maxHandovers bounds consecutive hand-overs inside one Locker per key: a
// waiter of another process sees a release at least every maxHandovers+1
// critical sections. A plain release costs a wake-up and an attempt from
// every waiting process, a hand-over one script: in the benchmark's C1 row
// (4 lockers × 4 goroutines) 7 gave 1,525–1,752 critical sections/s where 3
// gave 780–1,730/s, in separate runs on a noisy 2-core machine.
const maxHandovers = 7

// heir is what a releasing holder needs to take the lock for a waiter.
type heir struct {
	ctx context.Context // the waiter's: once it is done, no hand-over
	key string          // as the caller gave it
	o   options         // the waiter's; o.token is its WithToken, if any
}

// park marks tk, the head of rm, as waiting and open to a hand-over. In a
// fair room, a turn that came while nobody was parked goes to tk at once.
func (w *waiters) park(rm *room, tk *ticket) {
	w.mu.Lock()
	rm.parked = tk
	var g *grant
	if rm.fair {
		g = w.q.takePendingLocked(rm, tk)
	}
	w.mu.Unlock()
	if g != nil {
		w.q.deliver(tk, g)
	}
}

// unpark withdraws tk's offer; false means a releasing holder has claimed
// it, and its outcome will arrive on tk.grant.
func (w *waiters) unpark(rm *room, tk *ticket) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if rm.parked == tk {
		rm.parked = nil
		return true
	}
	return false
}

// claim returns the parked waiter for rk that a release may hand the lock
// to, or nil when the release must be a plain one: there is no parked
// waiter, its ctx is done, or maxHandovers hand-overs came in a row. A
// plain release starts the count again.
func (w *waiters) claim(rk string) *ticket {
	w.mu.Lock()
	defer w.mu.Unlock()
	rm := w.rooms[rk]
	if rm == nil {
		return nil
	}
	if rm.parked == nil || rm.parked.heir.ctx.Err() != nil || rm.handovers >= maxHandovers ||
		rm.parked.heir.o.repl.n > 0 { // a hand-over is not acknowledged by replicas

		rm.handovers = 0
		return nil
	}
	tk := rm.parked
	rm.parked = nil
	rm.handovers++
	tk.claim.Store(claimPending)
	return tk
}

// handOver releases l by handing it to the claimed waiter tk. It always
// answers tk: with the new Lock, or with nil when the hand-over failed (the
// waiter then tries by itself); when the waiter has left meanwhile (its
// ctx ended), it releases the new Lock instead. Each hand-over writes a
// fresh token (unless the waiter gave its own with WithToken), used by no
// other attempt. When the outcome is unknown (a timeout or a broken
// connection: the transfer may have run), that token is released too, so
// that a lock nobody holds is not left behind; as the token is never used
// again, that release, however late it lands, cannot delete a lock the
// waiter takes afterwards. l's own lock stays for the caller to release
// again. It returns what a release returns: nil, an error matching
// ErrNotHeld, one matching ErrUnknownOutcome, or a Redis error reply.
func (lk *Locker) handOver(ctx context.Context, l *Lock, tk *ticket) error {
	var nl *Lock
	defer func() {
		if tk.deliver() {
			tk.grant <- nl
		} else if nl != nil {
			// The waiter's ctx ended while the hand-over ran: give the
			// lock back (publishing, so that every waiter retries).
			_ = nl.Release(ctx)
		}
	}()
	h := tk.heir
	fenceFlag := h.o.fenceFlag()
	token := attemptToken(h.o)
	start := time.Now()
	op := nodeOp{script: transferScript, keys: []string{l.rkey, fenceKey(l.rkey)}, args: []any{l.token, token, h.o.ttl.Milliseconds(), fenceFlag}}
	run := lk.conns.get()
	// Never re-sent: a second run would find the lock handed over and
	// answer "not held".
	res, err := sendOnce(ctx, run, &op).Int64Slice()
	lk.conns.done()
	switch {
	case err != nil:
		if h.o.token == "" {
			lk.abandon(ctx, err, l.rkey, token)
		}
		err = unknownOutcome(err)
		if errors.Is(err, ErrUnknownOutcome) {
			l.releaseUnsure.Store(true)
		}
		return err
	case len(res) != 2:
		return fmt.Errorf("distlock: unexpected hand-over reply %v", res)
	case res[0] == 0:
		if l.releaseUnsure.Load() && time.Now().Before(l.ValidUntil()) {
			return nil // an earlier release of unknown outcome deleted it (see releaseFound)
		}
		return errGone
	}
	if nl = newLock(lk, h.key, l.rkey, token, res[1], h.o, start); nl == nil {
		// The waiter's validity would already be spent: free the key
		// (publishing, so that every waiter retries).
		lk.abandon(ctx, nil, l.rkey, token)
	}
	l.reportHandOver(nl != nil)
	return nil
}
