package distlock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Scheduled jobs: once per tick.
//
// Every replica of a service runs the same schedule (cron, a ticker, gocron)
// and calls OncePerTick when its timer fires. The first call for a tick takes
// a lock whose key names the tick; the others find it taken and skip. The
// lock is not released when the job ends: it is kept until the tick's window
// is over, so that a replica whose timer fires a little later than the
// winner's (a slower clock, a busy machine) still sees the tick as taken
// instead of running the job a second time, which is what happens with a
// lock that is only held while the job runs.
//
// The tick of a call is the boundary of the schedule's period NEAREST to the
// caller's clock (not the one before it): a replica whose clock is a little
// behind and whose timer fires just after the boundary reads a time just
// before it, and must still count the call for that boundary, not for the
// previous one.

// obtainer is what the job helpers need from a Locker or a Redlock.
type obtainer interface {
	Obtain(ctx context.Context, key string, opts ...Option) (*Lock, error)
	// defaults returns the options given to New (or NewRedlock).
	defaults() options
}

var (
	_ obtainer = (*Locker)(nil)
	_ obtainer = (*Redlock)(nil)
)

func (lk *Locker) defaults() options {
	if lk == nil {
		return defaultOptions()
	}
	return lk.opts
}

// TickOf returns the tick a call made at now counts for: the multiple of
// period nearest to now (counted from the zero time.Time, so for periods
// that divide a day the ticks fall on UTC midnight and its multiples). A
// time exactly halfway between two boundaries counts for the later one. It
// returns now unchanged when period ≤ 0.
func TickOf(now time.Time, period time.Duration) time.Time {
	if period <= 0 {
		return now
	}
	return now.Add(period / 2).Truncate(period)
}

// tickKey is the lock key of one tick of the job named key: the key, '@',
// and the tick in UTC (RFC 3339, with fractional seconds only when the tick
// has them), e.g. "report@2024-05-01T12:00:00Z".
func tickKey(key string, tick time.Time) string {
	return key + "@" + tick.UTC().Format(time.RFC3339Nano)
}

// A TickClaim is one replica's claim on one tick of a schedule, returned by
// ClaimTick: while it is held no other replica can claim the same tick. It
// keeps itself alive (refreshing its lock every TTL/3, as WithAutoRefresh
// does) until Finish, which ends the work but keeps the tick taken until its
// window is over. Its methods are safe for concurrent use.
//
// A claim that is never finished refreshes its lock until it is lost: always
// call Finish.
type TickClaim struct {
	lock *Lock
	tick time.Time
	end  time.Time // the tick is kept taken until here (claimer's wall clock)
	// endMono is end on the monotonic clock, measured from the moment the
	// claim read the wall clock: what Finish and the refresher go by.
	endMono time.Time

	finishOnce sync.Once
	finishErr  error
}

// Tick returns the tick this claim is for (see TickOf).
func (c *TickClaim) Tick() time.Time { return c.tick }

// Lock returns the lock behind the claim: its Done closes and its Err is set
// when the claim is lost. Release it only to give the tick back (another
// replica may then run it); Finish is the normal end.
func (c *TickClaim) Lock() *Lock { return c.lock }

// WindowEnd returns the time, on this replica's clock, until which the tick
// stays taken after Finish: the tick plus one period. Every replica whose
// clock is less than period/2 behind this one's makes its call for the tick
// before then (its own clock reaches tick+period/2 first). The claim goes
// by the monotonic clock from the moment it read the wall clock: a step of
// the wall clock after that (NTP, an operator) moves neither the window's
// end nor the lock's TTL, only what WindowEnd is compared with.
func (c *TickClaim) WindowEnd() time.Time { return c.end }

// Finish ends the work done under the claim. It stops the refresher (and
// waits for it) and shortens the lock so that it lives exactly until
// WindowEnd, keeping the tick taken for the replicas that have not fired
// yet; when WindowEnd has already passed it releases the lock. It returns an
// error matching ErrNotHeld when the claim was lost before Finish (another
// replica may have claimed the tick meanwhile), and a wrapped Redis error
// when Redis cannot be told (the lock then stays until its TTL ends, which is
// never before WindowEnd). Calling Finish again returns the same result.
func (c *TickClaim) Finish(ctx context.Context) error {
	c.finishOnce.Do(func() { c.finishErr = c.finish(ctx); c.lock.reportRelease(c.finishErr) })
	return c.finishErr
}

func (c *TickClaim) finish(ctx context.Context) error {
	c.lock.stopRefresher(ctx.Done())
	key := c.lock.Key()
	if err := c.lock.Err(); err != nil {
		return fmt.Errorf("finish %q: %w", key, err)
	}
	rest := time.Until(c.endMono)
	if (options{drift: c.lock.drift}).checkTTL(rest) != nil {
		// The window is over (or about to be): nobody counts this tick any
		// more, so the key can go.
		if err := c.lock.Release(ctx); err != nil {
			return fmt.Errorf("finish %q: %w", key, err)
		}
		return nil
	}
	if err := c.lock.Refresh(ctx, rest); err != nil {
		return fmt.Errorf("finish %q: %w", key, err)
	}
	return nil
}

// ClaimTick claims the current tick of a job that runs every period on
// every replica, as the first step of running it once per tick; OncePerTick
// does the whole. It tries once: when another replica has claimed the tick
// it returns an error matching ErrNotObtained. A Redis error is returned
// wrapped; a period ≤ 0, too short for the TTL checks, or an empty key
// returns an error matching ErrInvalidArgument. The tick is TickOf(now,
// period) and the lock key is key + "@" + the tick in UTC (RFC 3339).
//
// Assumptions, which make two replicas count a call for the same tick and
// the second find it taken:
//   - each replica calls within period/2 of a boundary by its own clock, as
//     a scheduler that fires on the boundaries does (cron, gocron, a ticker
//     started on a boundary); a call later than that counts for the next
//     tick. Boundaries are the multiples of period from the zero time.Time:
//     for periods that divide a day, UTC midnight and every period after it;
//   - the replicas' clocks differ by less than period/2: the tick stays taken
//     until the tick plus one period on the claimer's clock.
//
// So give as period a duration whose boundaries the schedule fires on, no
// longer than the shortest gap between two runs: time.Minute for a cron line
// with minute resolution. A daily job at 12:00 UTC with a 24h period fires
// halfway between two boundaries and breaks the first assumption; use
// time.Hour or time.Minute for it.
//
// Options are those of Obtain, except that WithRetry, WithBlocking and
// WithFencing are ignored. On a Locker the claim is one attempt: a taken
// tick stays taken. On a Redlock, replicas that fire together can split the
// nodes so that none reaches a quorum; the claim then retries after a
// jittered pause (a few milliseconds, doubling up to 50ms) as long as no
// holder has the tick on a quorum (one GET per node after each failed
// attempt tells), for at most min(period/4, 1s) after its first attempt and
// never past tick+period/2 on the caller's clock, which keeps every retry
// within the assumptions above. Fencing is off because every tick has a key
// of its own (its fence would always be 1, and the fence counter would
// outlive the tick). WithTTL (default DefaultTTL) is the liveness TTL: the
// claim is refreshed every TTL/3 while held, so a loss is noticed that
// soon, and a replica that dies while holding the claim keeps the tick
// taken for at least that long and at least until WindowEnd.
func (lk *Locker) ClaimTick(ctx context.Context, key string, period time.Duration, opts ...Option) (*TickClaim, error) {
	return claimTick(ctx, lk, time.Now, key, period, opts)
}

// OncePerTick runs fn at most once per tick of a schedule across all
// replicas that call it with the same key and period: the replica that
// claims the tick first runs fn, the others return at once with ran false
// and a nil error. The claim (see ClaimTick for the tick, the key and the
// assumptions on timing and clocks) is refreshed while fn runs, so fn may
// outlast the period; fn's ctx is cancelled as soon as the claim is lost
// (context.Cause then matches ErrNotHeld). After fn the tick stays taken
// until its window is over; fn is not run again for the tick, not even when
// it fails.
//
// OncePerTick returns ran true and fn's error when fn ran; when the claim
// was lost while fn ran, the error also matches ErrNotHeld. When the tick
// could not be claimed for a reason other than another replica having it (a
// Redis error, ctx done, bad input) fn does not run and the error says why.
func (lk *Locker) OncePerTick(ctx context.Context, key string, period time.Duration, fn func(ctx context.Context, tick time.Time) error, opts ...Option) (ran bool, err error) {
	return oncePerTick(ctx, lk, time.Now, key, period, fn, opts)
}

// ClaimTick claims the current tick of a job on a quorum of the nodes, as
// Locker.ClaimTick does on one Redis, except that a split vote (replicas
// firing together, none with a quorum) is retried for a bounded time: see
// Locker.ClaimTick.
func (r *Redlock) ClaimTick(ctx context.Context, key string, period time.Duration, opts ...Option) (*TickClaim, error) {
	return claimTick(ctx, r, time.Now, key, period, opts)
}

// OncePerTick runs fn at most once per tick of a schedule across all
// replicas, as Locker.OncePerTick does on one Redis, with the tick claimed
// on a quorum of the nodes by Redlock.ClaimTick (which retries a split
// vote for a bounded time).
func (r *Redlock) OncePerTick(ctx context.Context, key string, period time.Duration, fn func(ctx context.Context, tick time.Time) error, opts ...Option) (ran bool, err error) {
	return oncePerTick(ctx, r, time.Now, key, period, fn, opts)
}

// claimTick is ClaimTick with the clock as a parameter, for every obtainer.
func claimTick(ctx context.Context, ob obtainer, now func() time.Time, key string, period time.Duration, opts []Option) (*TickClaim, error) {
	if period <= 0 {
		return nil, fmt.Errorf("claim tick of %q: %w", key, invalidf("period must be positive, got %v", period))
	}
	if key == "" {
		return nil, fmt.Errorf("claim tick: %w", invalidf("empty key"))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("claim tick of %q: %w", key, err)
	}
	if err := rejectShared("ClaimTick", opts); err != nil {
		return nil, fmt.Errorf("claim tick of %q: %w", key, err)
	}
	o := ob.defaults().with(opts)
	live := o.ttl
	if err := o.checkTTL(live); err != nil {
		return nil, fmt.Errorf("claim tick of %q: %w", key, err)
	}
	// The shortest hold is period/2 (a call at the end of the window); it
	// must make a usable lock.
	if err := o.checkTTL(period / 2); err != nil {
		return nil, fmt.Errorf("claim tick of %q: %w", key, invalidf("period %v is too short: %v", period, err))
	}
	t, mono := now(), time.Now()
	tick := TickOf(t, period)
	end := tick.Add(period)
	ttl := max(end.Sub(t), live)
	all := make([]Option, 0, len(opts)+5)
	all = append(all, opts...)
	all = append(all, WithTTL(ttl), WithRetry(NoRetry()), blockingOption(false), autoRefreshOption(false), fencingOption(false))
	var l *Lock
	var err error
	if r, ok := ob.(*Redlock); ok {
		l, err = r.claimSplitVote(ctx, tickKey(key, tick), o.with(all), time.Now().Add(tickRetryWindow(t, tick, period)), all)
	} else {
		l, err = ob.Obtain(ctx, tickKey(key, tick), all...)
	}
	if err != nil {
		return nil, err
	}
	c := &TickClaim{lock: l, tick: tick, end: end, endMono: mono.Add(end.Sub(t))}
	// Every live/3 the lock is extended to the later of WindowEnd and
	// now+live, so that a loss is noticed within live/3 while the tick stays
	// taken at least until WindowEnd.
	l.startRefresher(live, func() time.Duration { return max(time.Until(c.endMono), live) })
	return c, nil
}

// Retrying a split vote on a Redlock. Replicas that fire together can split
// the nodes between them (with three nodes and three replicas, one node
// each) so that none reaches a quorum. Each failed attempt gives back what
// it took, so a retry after a random pause lets one of them win; once one
// has won, the others' retries find the tick taken. The retries of a claim
// end tickRetryWindow after its first attempt.
const (
	tickRetryMax      = time.Second          // the longest a claim retries
	tickRetryMinDelay = 2 * time.Millisecond // the first pause, before jitter
	tickRetryMaxDelay = 50 * time.Millisecond
)

// tickRetryWindow is how long a Redlock claim made at t (on the caller's
// clock) for tick may retry: at most period/4 and tickRetryMax, and never
// past tick+period/2 on the caller's clock, so that every attempt falls
// where a first attempt could (see ClaimTick's assumptions) and the tick
// claimed by a replica is still held by it, whatever the clock skew
// allowed, when a loser's last retry arrives.
func tickRetryWindow(t, tick time.Time, period time.Duration) time.Duration {
	return max(min(period/4, tickRetryMax, tick.Add(period/2).Sub(t)), 0)
}

// tickRetryDelay is the pause before retry n of a split vote: uniform in
// (0, d], with d doubling from tickRetryMinDelay up to tickRetryMaxDelay.
func tickRetryDelay(n int) time.Duration {
	d := tickRetryMaxDelay
	if n <= 8 {
		d = min(tickRetryMinDelay<<max(n-1, 0), tickRetryMaxDelay)
	}
	return 1 + rand.N(d)
}

// claimSplitVote takes the tick's lock named key on a quorum, retrying
// while no quorum is decided: after an attempt that found the lock taken it
// reads the key on the nodes (one GET each); when one holder has it on a
// quorum the tick is taken and it returns ErrNotObtained at once, otherwise
// (a split vote, or a winner still mid-attempt) it retries after
// tickRetryDelay, until the monotonic deadline until. o are the call's
// resolved options and opts the options for Obtain.
func (r *Redlock) claimSplitVote(ctx context.Context, key string, o options, until time.Time, opts []Option) (*Lock, error) {
	for n := 1; ; n++ {
		l, err := r.Obtain(ctx, key, opts...)
		if err == nil || !errors.Is(err, ErrNotObtained) || ctx.Err() != nil {
			return l, err
		}
		if r.quorumHolder(ctx, lockKey(o.prefix, key), min(o.nodeTimeout, o.ttl/10)) {
			return nil, err
		}
		d := tickRetryDelay(n)
		if time.Until(until) <= d {
			return nil, err
		}
		if err := sleep(ctx, d); err != nil {
			return nil, notObtainedByCtx("obtain", key, err)
		}
	}
}

// quorumHolder reports whether one token holds the lock rk on a quorum of
// the nodes, as far as the nodes that answer within timeout tell.
func (r *Redlock) quorumHolder(ctx context.Context, rk string, timeout time.Duration) bool {
	tokens := make([]string, len(r.nodes))
	op := nodeOp{raw: []any{"get", rk}}
	r.fanOut(ctx, timeout, waitAll, nil, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		if s, err := cmd.Text(); err == nil {
			tokens[i] = s
		}
		return vOK, nil
	})
	count := map[string]int{}
	for _, tk := range tokens {
		if tk != "" {
			count[tk]++
			if count[tk] >= r.quorum {
				return true
			}
		}
	}
	return false
}

// oncePerTick is OncePerTick with the clock as a parameter.
func oncePerTick(ctx context.Context, ob obtainer, now func() time.Time, key string, period time.Duration, fn func(context.Context, time.Time) error, opts []Option) (bool, error) {
	if fn == nil {
		return false, fmt.Errorf("once per tick %q: %w", key, invalidf("nil fn"))
	}
	c, err := claimTick(ctx, ob, now, key, period, opts)
	if err != nil {
		if errors.Is(err, ErrNotObtained) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			return false, nil // another replica has the tick
		}
		return false, err
	}
	fctx, cancel := c.lock.Context(ctx)
	defer cancel()
	finish := func() error { return detached(ctx, c.Finish) }
	fnErr := callReleasing(func() error { return fn(fctx, c.tick) }, func() { _ = finish() })
	finErr := finish()
	if finErr != nil && errors.Is(finErr, ErrNotHeld) {
		return true, joinErrors(fnErr, fmt.Errorf("tick %s of %q lost while fn ran: %w", c.tick.UTC().Format(time.RFC3339Nano), key, finErr))
	}
	return true, joinErrors(fnErr, finErr)
}
