// Package distlockgocron runs gocron v2 jobs once per tick across the
// replicas of a service, with distlock locks on Redis.
//
// gocron's own distributed Locker contract holds a lock while a job runs and
// releases it when the run ends. When the replicas' timers fire a little
// apart (clocks that differ by milliseconds, a busy machine), a short run
// ends and releases before a slower replica fires, and the job runs twice
// for the same tick. The Locker here claims the tick instead (distlock's
// ClaimTick): the lock's key names the tick, and it is kept after the run
// until the tick's window is over, so the slower replica finds the tick
// taken.
//
//	lk := distlock.New(redisClient)
//	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(distlockgocron.NewLocker(lk, time.Minute)))
//
// The tick of a run is the boundary of the period nearest to the time the
// job fires, so jobs must fire on the boundaries of the period: a cron line
// fires on minute boundaries (period time.Minute; time.Second for a cron
// line with seconds); start a duration job on a boundary with
// gocron.WithStartAt. Clocks of the replicas must differ by less than
// period/2. See distlock's ClaimTick.
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

// TickClaimer claims ticks of a schedule: a *distlock.Locker or, over
// several independent Redis nodes, a *distlock.Redlock.
type TickClaimer interface {
	ClaimTick(ctx context.Context, key string, period time.Duration, opts ...distlock.Option) (*distlock.TickClaim, error)
}

// Obtainer takes locks: a *distlock.Locker or a *distlock.Redlock.
type Obtainer interface {
	Obtain(ctx context.Context, key string, opts ...distlock.Option) (*distlock.Lock, error)
}

// finishTimeout bounds the Unlock of a run, which may be called with a
// ctx that the scheduler's shutdown has already cancelled.
const finishTimeout = 5 * time.Second

// Locker is a gocron.Locker that lets each job run once per tick across
// all schedulers that share it through Redis. Create it with NewLocker.
type Locker struct {
	c      TickClaimer
	period time.Duration
	opts   []distlock.Option
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
// gocron.WithDistributedJobLocker (one job). opts go to every ClaimTick;
// WithTTL sets how soon a lost claim is noticed while a job runs (default
// distlock.DefaultTTL) and WithKeyPrefix the namespace. A period ≤ 0 makes
// every Lock fail with an error matching distlock.ErrInvalidArgument.
func NewLocker(c TickClaimer, period time.Duration, opts ...distlock.Option) *Locker {
	return &Locker{c: c, period: period, opts: opts}
}

// Lock claims the current tick of the job named key (gocron passes the
// job's name: give every job a distinct name with gocron.WithName). It
// returns an error matching distlock.ErrNotObtained when another scheduler
// has the tick, and any other error when Redis cannot say; gocron skips the
// run on any error.
func (l *Locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	claim, err := l.c.ClaimTick(ctx, key, l.period, l.opts...)
	if err != nil {
		return nil, err
	}
	return &tickLock{claim: claim}, nil
}

// tickLock is one run's claim on its tick.
type tickLock struct{ claim *distlock.TickClaim }

// Unlock ends the run: the claim stops being refreshed but the tick stays
// taken until its window ends (TickClaim.Finish).
func (t *tickLock) Unlock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	return t.claim.Finish(ctx)
}

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
func NewElector(o Obtainer, key string, opts ...distlock.Option) *Elector {
	all := append(append([]distlock.Option(nil), opts...), distlock.WithAutoRefresh())
	return &Elector{o: o, key: key, opts: all}
}

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
