// Package distlockgocron runs gocron v2 jobs once per tick across the
// replicas of a service, with distlock locks on Redis.
//
// A lock held only while a job runs (what gocron's Locker contract asks
// for) is not enough on its own: when the replicas' timers fire a little
// apart (clocks that differ, a busy machine), a short run ends and releases
// before a slower replica fires, and the job runs twice for the same tick.
// The Locker here does two things for each scheduled run:
//
//   - it claims the tick (distlock's ClaimTick): the claim's key names the
//     tick, and it is kept after the run until the tick's window is over,
//     so the slower replica finds the tick taken;
//
//   - it holds a run lock on the job's name for the whole run (refreshed
//     while the job runs, released by Unlock), as gocron's contract says,
//     so that a run longer than the period never overlaps the next tick's
//     run on another replica: that tick is skipped instead, everywhere.
//
//     lk := distlock.New(redisClient)
//     s, err := gocron.NewScheduler(gocron.WithDistributedLocker(distlockgocron.NewLocker(lk, time.Minute)))
//
// The tick of a run is the boundary of the period nearest to the time the
// job fires, so jobs must fire on the boundaries of the period: a cron line
// fires on minute boundaries (period time.Minute; time.Second for a cron
// line with seconds); start a duration job on a boundary with
// gocron.WithStartAt. Clocks of the replicas must differ by less than
// period/2. See distlock's ClaimTick.
//
// Runs off the schedule (job.RunNow, gocron.WithStartImmediately) are told
// apart from scheduled ones and run now: see Locker.Lock.
//
// The Elector makes one replica the leader that runs every job.
package distlockgocron

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/distlock/distlock"
)

// TickClaimer claims ticks of a schedule and takes locks: a
// *distlock.Locker or, over several independent Redis nodes, a
// *distlock.Redlock.
type TickClaimer interface {
	ClaimTick(ctx context.Context, key string, period time.Duration, opts ...distlock.Option) (*distlock.TickClaim, error)
	Obtain(ctx context.Context, key string, opts ...distlock.Option) (*distlock.Lock, error)
}

// Obtainer takes locks: a *distlock.Locker or a *distlock.Redlock.
type Obtainer interface {
	Obtain(ctx context.Context, key string, opts ...distlock.Option) (*distlock.Lock, error)
}

// finishTimeout bounds the Unlock of a run, which may be called with a
// ctx that the scheduler's shutdown has already cancelled.
const finishTimeout = 5 * time.Second

// Locker is a gocron.Locker that lets each job run once per tick across
// all schedulers that share it through Redis, one run of a job at a time.
// Create it with NewLocker, one per scheduler (it remembers which ticks its
// scheduler has fired, to tell RunNow apart). It is safe for concurrent use.
type Locker struct {
	c      TickClaimer
	period time.Duration
	opts   []distlock.Option

	mu    sync.Mutex
	fired map[string]time.Time // by job name: the last tick its schedule fired for
}

var (
	_ gocron.Locker = (*Locker)(nil)
	_ TickClaimer   = (*distlock.Locker)(nil)
	_ TickClaimer   = (*distlock.Redlock)(nil)
	_ Obtainer      = (*distlock.Locker)(nil)
	_ Obtainer      = (*distlock.Redlock)(nil)
)

// NewLocker returns a gocron.Locker for jobs that run every period (for
// cron jobs with uneven gaps: the shortest gap between two runs, e.g.
// time.Minute for a cron line with minute resolution). Give it to
// gocron.WithDistributedLocker (every job of the scheduler) or
// gocron.WithDistributedJobLocker (one job), and give each scheduler its own
// Locker. opts go to every ClaimTick and to the run lock; WithTTL sets how
// soon a lost claim or run lock is noticed while a job runs, and how long a
// replica that dies in a run blocks the job's next runs (default
// distlock.DefaultTTL); WithKeyPrefix sets the namespace. A period ≤ 0
// makes every Lock fail with an error matching distlock.ErrInvalidArgument.
func NewLocker(c TickClaimer, period time.Duration, opts ...distlock.Option) *Locker {
	return &Locker{c: c, period: period, opts: opts, fired: map[string]time.Time{}}
}

// runKeySuffix makes the run lock's key: the job's name + "@run", which
// no tick's key (name + "@" + an RFC 3339 time) can be.
const runKeySuffix = "@run"

// earlyFire is how early, before a boundary of the period, a scheduler's
// timer may fire and still be counted for that boundary (wall-clock
// adjustments while it waited): period/10, at most 100ms.
func earlyFire(period time.Duration) time.Duration {
	return min(period/10, 100*time.Millisecond)
}

// Lock is called by gocron before each run of the job named key (gocron
// passes the job's name: give every job a distinct name with
// gocron.WithName). gocron skips the run on any error.
//
// A scheduled run claims its tick (see the package doc) and then takes the
// run lock of the job, held until Unlock and refreshed meanwhile. It
// returns an error matching distlock.ErrNotObtained when another replica
// has the tick, or when a run of the job is still going on somewhere (the
// tick then stays taken, so it is skipped on every replica, as gocron's
// WithSingletonMode(LimitModeReschedule) does on one scheduler).
//
// A run off the schedule (job.RunNow, gocron.WithStartImmediately) takes
// only the run lock: it runs now unless a run of the job is going on
// somewhere, and it uses up no tick, so the next scheduled run still
// happens. A call is off the schedule when this Locker has already had the
// call of the last boundary before it (the scheduler fires there, so a
// RunNow comes after that). Calls are told apart by time and by what this
// Locker has seen, as gocron passes Lock nothing else:
//   - less than period/2 after a boundary (or min(period/10, 100ms) before
//     it) that this Locker has not seen: the boundary's scheduled run;
//   - more than period/2 after a boundary that this Locker has not seen:
//     either that boundary's run fired too late for the assumptions, or a
//     RunNow in a scheduler that has not fired yet (it just started). It is
//     skipped with an error matching ErrLate: never run twice, and never
//     counted for the next boundary, whose scheduled run must still happen.
//
// So in a scheduler that has just started, RunNow and
// gocron.WithStartImmediately do not run now: in the first half of a
// period they count as that boundary's run (skipped if another replica ran
// it), in the second half they are skipped (ErrLate).
//
// Any other error (Redis, ctx) is returned as is.
func (l *Locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	var claim *distlock.TickClaim
	switch l.classify(key) {
	case tooLate:
		return nil, fmt.Errorf("lock %q: %w", key, ErrLate)
	case scheduledRun:
		var err error
		claim, err = l.c.ClaimTick(ctx, key, l.period, l.opts...)
		if err != nil {
			return nil, err
		}
		l.remember(key, claim.Tick())
	}
	opts := append(append([]distlock.Option(nil), l.opts...), distlock.WithAutoRefresh())
	run, err := l.c.Obtain(ctx, key+runKeySuffix, opts...)
	if err != nil {
		if claim != nil {
			// The tick stays taken: nobody runs it while the job runs.
			_ = finish(ctx, claim)
		}
		if errors.Is(err, distlock.ErrNotObtained) && ctx.Err() == nil {
			return nil, fmt.Errorf("lock %q: a run is still going on: %w", key, err)
		}
		return nil, err
	}
	return &runLock{claim: claim, run: run}, nil
}

// The kinds of call to Lock.
type callKind int

const (
	scheduledRun callKind = iota // the schedule fired for the nearest boundary
	offSchedule                  // RunNow, a start-immediately run
	tooLate                      // cannot be told apart: skipped
)

// classify tells what a call now for the job key is (see Lock), and
// remembers the boundary a scheduled (or too late) call was for.
func (l *Locker) classify(key string) callKind {
	if l.period <= 0 {
		return scheduledRun // ClaimTick reports the bad period
	}
	now := time.Now()
	tick := distlock.TickOf(now, l.period)
	l.mu.Lock()
	defer l.mu.Unlock()
	last, ok := l.fired[key]
	if !now.Before(tick.Add(-earlyFire(l.period))) {
		// Within period/2 after a boundary, or just before it.
		if ok && !last.Before(tick) {
			return offSchedule // this scheduler has fired for it already
		}
		l.fired[key] = tick
		return scheduledRun
	}
	// More than period/2 after the boundary prev, and not yet at the next.
	prev := tick.Add(-l.period)
	if ok && !last.Before(prev) {
		return offSchedule // after this scheduler's run for prev
	}
	l.fired[key] = prev
	return tooLate
}

// remember records that key's schedule fired for tick.
func (l *Locker) remember(key string, tick time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.fired[key]; !ok || last.Before(tick) {
		l.fired[key] = tick
	}
}

// finish ends a tick claim with a bounded ctx of its own.
func finish(ctx context.Context, claim *distlock.TickClaim) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	return claim.Finish(ctx)
}

// runLock is one run's hold: the run lock, and the tick's claim for a
// scheduled run.
type runLock struct {
	claim *distlock.TickClaim // nil off the schedule
	run   *distlock.Lock
}

// Unlock ends the run: it releases the run lock and, for a scheduled run,
// stops refreshing the tick's claim, which stays taken until its window
// ends (TickClaim.Finish). It returns an error matching distlock.ErrNotHeld
// when the run lock or the claim was lost during the run (another replica
// may then have run beside it).
func (r *runLock) Unlock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	err := r.run.Release(ctx)
	if r.claim != nil {
		err = errors.Join(err, r.claim.Finish(ctx))
	}
	return err
}

// ErrLate is matched by the error of Locker.Lock for a call that came more
// than period/2 after a boundary that its scheduler had not fired for: a
// scheduled run that fired too late to be counted safely, or a RunNow in a
// scheduler that has not fired yet. The run is skipped.
var ErrLate = errors.New("distlockgocron: too late for its tick, and not after a run of the tick: skipped")

// ErrNotLeader is returned by Elector.IsLeader on a replica that is not the
// leader.
var ErrNotLeader = errors.New("distlockgocron: not the leader")

// Elector is a gocron.Elector: the replica that holds the lock named key is
// the leader and runs every job; the others skip them. The leader keeps the
// lock (auto-refreshed) until Close or until it is lost; a replica takes it
// over on its next IsLeader call once it is free. Create it with
// NewElector; it is safe for concurrent use.
type Elector struct {
	o    Obtainer
	key  string
	opts []distlock.Option

	mu   sync.Mutex
	lock *distlock.Lock // held while leader
}

var _ gocron.Elector = (*Elector)(nil)

// NewElector returns an Elector for the leadership named key. opts go to
// Obtain; WithTTL (default distlock.DefaultTTL) is how long a leader that
// dies without Close blocks the others.
//
// Over a *distlock.Redlock, candidates whose schedulers fire together can
// split the nodes between them so that none reaches a quorum, and every
// replica would skip the job. So on a Redlock a refused attempt is retried
// up to electionRetries (4) times, after jittered pauses doubling from
// 2ms (at most 30ms of pauses in all); a WithRetry in opts replaces that.
func NewElector(o Obtainer, key string, opts ...distlock.Option) *Elector {
	var all []distlock.Option
	if _, quorum := o.(*distlock.Redlock); quorum {
		all = append(all, distlock.WithRetry(distlock.LimitRetry(distlock.ExponentialBackoff(2*time.Millisecond, 50*time.Millisecond), electionRetries)))
	}
	all = append(append(all, opts...), distlock.WithAutoRefresh())
	return &Elector{o: o, key: key, opts: all}
}

// electionRetries is how many times an Elector on a Redlock retries a
// refused attempt (a split vote).
const electionRetries = 4

// IsLeader returns nil when this replica is the leader: it holds the lock
// and Redis confirms it now (one refresh), or the lock was free and this
// call took it. It returns an error matching ErrNotLeader when another
// replica leads, and a Redis error when Redis cannot say (the job is then
// skipped: no replica runs jobs without Redis).
func (e *Elector) IsLeader(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lock != nil {
		err := e.lock.Refresh(ctx, 0)
		if err == nil {
			return nil
		}
		if !errors.Is(err, distlock.ErrNotHeld) {
			return fmt.Errorf("is leader %q: %w", e.key, err)
		}
		e.lock = nil // lost: campaign again below
	}
	l, err := e.o.Obtain(ctx, e.key, e.opts...)
	switch {
	case err == nil:
		e.lock = l
		return nil
	case errors.Is(err, distlock.ErrNotObtained) && ctx.Err() == nil:
		return fmt.Errorf("%w: %q is held by another replica", ErrNotLeader, e.key)
	}
	return fmt.Errorf("is leader %q: %w", e.key, err)
}

// Close gives up the leadership, if held, so that another replica takes
// over at once, and stops refreshing it. Call it when the scheduler shuts
// down. It returns the release's error (nil when not leader).
func (e *Elector) Close(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lock == nil {
		return nil
	}
	l := e.lock
	e.lock = nil
	return l.Release(ctx)
}
