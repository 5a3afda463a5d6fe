package distlock

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Defaults used when no option says otherwise.
const (
	// DefaultTTL is the lock lifetime used when WithTTL is not given.
	DefaultTTL = 30 * time.Second
	// DefaultDriftFactor is the clock drift allowance used when
	// WithDriftFactor is not given: 1% of the TTL (plus 2ms).
	DefaultDriftFactor = 0.01
	// DefaultKeyPrefix is the namespace of every key the library writes when
	// WithKeyPrefix is not given.
	DefaultKeyPrefix = "distlock:"
	// DefaultFairness is whether blocked callers of a Locker wait their
	// turn, first come first served across processes (WithFairness), when
	// no option says otherwise: true. (A Redlock always barges.)
	DefaultFairness = true
	// DefaultNodeTimeout is the per-node timeout of a Redlock attempt when
	// WithNodeTimeout is not given. It is further capped at TTL/10 so that
	// a slow node cannot eat the lock's validity.
	DefaultNodeTimeout = 100 * time.Millisecond
)

// An Option configures a Locker or Redlock (given to New or NewRedlock, where
// it sets the default for every call) or a single Obtain or Do call (where it
// overrides that default). Options are comparable values and print
// themselves readably (fmt %v).
type Option interface {
	apply(*options)
	String() string
}

// options is the resolved configuration of one call.
type options struct {
	ttl         time.Duration
	retry       RetryStrategy
	blocking    bool
	autoRefresh bool
	fencing     bool
	token       string
	prefix      string
	drift       float64
	nodeTimeout time.Duration
	pipelining  bool
	repl        replication
	fair        bool     // blocked callers wait their turn in a queue in Redis
	observer    Observer // nil: none
	share       sharing  // WithShared, WithLimit
	owner       string   // the owner label stored with each lock (owner.go)
}

func defaultOptions() options {
	return options{
		ttl:         DefaultTTL,
		retry:       NoRetry(),
		prefix:      DefaultKeyPrefix,
		drift:       DefaultDriftFactor,
		nodeTimeout: DefaultNodeTimeout,
		pipelining:  true,
		owner:       defaultOwner(),
		fair:        DefaultFairness,
	}
}

// with returns a copy of o with opts applied in order.
func (o options) with(opts []Option) options {
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	return o
}

// fenceFlag is acquire.lua's and transfer.lua's ARGV: "1" to draw a fence.
func (o options) fenceFlag() string {
	if o.fencing {
		return "1"
	}
	return "0"
}

// driftFor is the clock drift allowance for a lock of the given TTL:
// TTL×factor + 2ms, as in the Redis distlock spec.
func (o options) driftFor(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl)*o.drift) + 2*time.Millisecond
}

// checkTTL reports whether ttl and the drift factor make a usable lock.
func (o options) checkTTL(ttl time.Duration) error {
	switch {
	case ttl <= 0:
		return invalidf("TTL must be positive, got %v", ttl)
	case math.IsNaN(o.drift) || math.IsInf(o.drift, 0) || o.drift < 0 || o.drift >= 1:
		return invalidf("drift factor must be in [0, 1), got %v", o.drift)
	case ttl <= o.driftFor(ttl):
		return invalidf("TTL %v is not above the clock drift allowance %v", ttl, o.driftFor(ttl))
	}
	return nil
}

// validate reports the first problem with the resolved options, as an error
// matching ErrInvalidArgument.
func (o options) validate() error {
	if err := o.checkTTL(o.ttl); err != nil {
		return err
	}
	switch {
	case o.retry == nil:
		return invalidf("retry strategy must not be nil")
	case o.nodeTimeout <= 0:
		return invalidf("node timeout must be positive, got %v", o.nodeTimeout)
	case strings.HasPrefix(o.token, "\x00"):
		// Markers (Once's done, shared leases) start with NUL: a token
		// that did could re-attach to one.
		return invalidf("a token must not start with a NUL byte")
	}
	if err := checkOwner(o.owner); err != nil {
		return err
	}
	return o.repl.check(o.ttl)
}

type ttlOption time.Duration

func (t ttlOption) apply(o *options) { o.ttl = time.Duration(t) }
func (t ttlOption) String() string   { return fmt.Sprintf("WithTTL(%v)", time.Duration(t)) }

// WithTTL sets how long a lock lives in Redis unless refreshed. Default
// DefaultTTL (30s). It must be positive and above the drift allowance
// (TTL×drift factor + 2ms), otherwise Obtain fails with ErrInvalidArgument.
// A short TTL makes a crashed holder's lock free sooner; with
// WithAutoRefresh a short TTL costs only more refresh commands.
func WithTTL(ttl time.Duration) Option { return ttlOption(ttl) }

type retryOption struct{ s RetryStrategy }

func (r retryOption) apply(o *options) { o.retry = r.s }
func (r retryOption) String() string   { return fmt.Sprintf("WithRetry(%v)", r.s) }

// WithRetry sets how Obtain retries while the lock is held by someone else:
// its delays are the pauses between attempts, and when it gives up Obtain
// returns ErrNotObtained. Default NoRetry(): one attempt. A nil strategy
// makes Obtain fail with ErrInvalidArgument. With WithBlocking a caller is
// woken by releases instead; the strategy's delays are then only the
// fallback re-check interval, in case a wake-up was missed (default: a
// jittered 200ms doubling to 2s), and its limit does not apply: the wait
// ends with ctx.
func WithRetry(s RetryStrategy) Option { return retryOption{s} }

type blockingOption bool

func (b blockingOption) apply(o *options) { o.blocking = bool(b) }
func (b blockingOption) String() string   { return "WithBlocking()" }

// WithBlocking makes Obtain wait until the lock is obtained or ctx is done.
// Default off. When ctx ends first the error matches both ErrNotObtained and
// ctx.Err(). Without a deadline on ctx, Obtain may wait forever.
//
// A blocked caller does not poll. By default (WithFairness) a blocked
// caller of a Locker waits its turn: it queues in Redis, next to the lock,
// and a release hands the lock straight to the first waiter of the queue,
// whatever its process, and wakes only that one. Blocked callers of one
// Locker for one key share one place in the queue and take their turns in
// arrival order. With WithFairness(false), and always on a Redlock, it
// barges instead: it is woken the moment the lock is released (the
// release publishes on the lock's channel) and competes with every other
// process's attempt; a release hands the lock to the first blocked caller
// of its own Locker at most 7 times in a row.
// Either way each wait is also capped by the holder's TTL (expiry hands
// nothing over) and, in case a wake-up was missed, by the retry
// strategy's delay (WithRetry; default without one: a jittered 200ms
// doubling to 2s). See Waiting in the package doc for what a dead waiter
// costs the others.
func WithBlocking() Option { return blockingOption(true) }

type fairnessOption bool

func (f fairnessOption) apply(o *options) { o.fair = bool(f) }
func (f fairnessOption) String() string   { return fmt.Sprintf("WithFairness(%v)", bool(f)) }

// WithFairness chooses how blocked callers (WithBlocking) of a Locker get
// the lock: true makes them wait their turn, first come first served
// across processes; false lets them barge. Default DefaultFairness
// (true: in turn). Blocked shared leases (WithShared, WithLimit) and
// ObtainMulti barge whatever this option says.
//
// Fair: a blocked caller queues in Redis, next to the lock (one place per
// Locker and key, shared by the Locker's callers blocked on the key, who
// queue behind each other in the process), and a release hands the lock
// straight to the first live place of the queue in the same script: the
// lock is never free in between, and only that waiter is woken. An
// uncontended Obtain and Release cost what they cost without fairness. A
// waiter whose process died, whose ctx ended or that lost Redis stops
// holding the queue: see Waiting in the package doc for the bounds.
//
// Barging: a release frees the lock and wakes every process that waits
// for it; the first attempt to arrive wins, often the releaser's own next
// one, and a release hands the lock to a blocked caller of its own Locker
// at most 7 times in a row. In the benchmark (bench/RESULTS.md, rows C1
// and C16) barging gave a tenth to a third more critical sections per
// second when each process has 4 callers, which hand the lock to each
// other inside the process, while some caller waited twenty times longer;
// at one caller per process it gave half those of waiting in turn and
// cost Redis ten times the commands.
//
// Fairness needs a token drawn for each turn, a hand-over that replicas
// need not acknowledge and one order of the queue: callers with WithToken
// or WithReplicas barge whatever this option says, and so does Once. So
// do the callers of a Locker whose Redis user may not run the queue's
// list commands (an ACL without them: see the README), from the first
// queued attempt Redis refuses. A caller that barges gets the lock only
// when nobody is queued for it: use one mode for one key. A Redlock has
// no single queue (a quorum of queues gives no one order): it always
// barges, and WithFairness(true) given to NewRedlock or to one of its
// calls fails with ErrInvalidArgument.
func WithFairness(on bool) Option { return fairnessOption(on) }

type autoRefreshOption bool

func (a autoRefreshOption) apply(o *options) { o.autoRefresh = bool(a) }
func (a autoRefreshOption) String() string   { return "WithAutoRefresh()" }

// WithAutoRefresh keeps the lock alive until Release by refreshing it every
// TTL/3 from a goroutine owned by the Lock. Default off (Do always turns it
// on). An answer that the lock is no longer held is final: Done closes and
// Err matches ErrNotHeld. Transient errors are retried until ValidUntil, when
// the lock is reported lost.
func WithAutoRefresh() Option { return autoRefreshOption(true) }

type fencingOption bool

func (f fencingOption) apply(o *options) { o.fencing = bool(f) }
func (f fencingOption) String() string   { return "WithFencing()" }

// WithFencing makes Obtain also increment a per-key counter that never
// expires, so that Lock.Fence is strictly greater than every fence handed out
// before for the key, as long as Redis keeps the counter: a restart without
// persistence, or a failover to a replica that had not received the last
// increment, loses it with the lock, and a fence can then repeat
// (WithReplicas rules out the second for replicas that acknowledged). Default
// off (Fence returns 0). Pass the fence to the resource you guard and have
// it reject writes with an older fence.
func WithFencing() Option { return fencingOption(true) }

type tokenOption string

func (t tokenOption) apply(o *options) { o.token = string(t) }
func (t tokenOption) String() string   { return fmt.Sprintf("WithToken(%d bytes)", len(t)) }

// WithToken makes Obtain use the caller's token instead of a fresh random
// UUID. Default: a new UUID v4 per attempt. Obtain with the token of a lock
// that is still held re-attaches to it (e.g. after a process restart) and
// extends it to the new TTL. The token is the only credential of a lock:
// keep it secret and unguessable. An empty token means "generate one"; one
// that starts with a NUL byte fails with ErrInvalidArgument (the library's
// markers, Once's done and shared leases', start with one). It
// is a per-call option only (Obtain, Do): given to New or NewRedlock, where
// every caller would share it and re-attach to each other's lock, it makes
// every call fail with ErrInvalidArgument.
func WithToken(token string) Option { return tokenOption(token) }

type prefixOption string

func (p prefixOption) apply(o *options) { o.prefix = string(p) }
func (p prefixOption) String() string   { return fmt.Sprintf("WithKeyPrefix(%q)", string(p)) }

// WithKeyPrefix sets the namespace of every key the library writes (the lock,
// its fence counter, its wake-up channel). Default DefaultKeyPrefix
// ("distlock:"). The empty prefix is allowed. Lockers that must exclude each
// other must use the same prefix.
func WithKeyPrefix(prefix string) Option { return prefixOption(prefix) }

type driftOption float64

func (d driftOption) apply(o *options) { o.drift = float64(d) }
func (d driftOption) String() string   { return fmt.Sprintf("WithDriftFactor(%v)", float64(d)) }

// WithDriftFactor sets the clock drift allowance as a fraction of the TTL.
// Default DefaultDriftFactor (0.01). A lock's validity is TTL − (TTL×factor +
// 2ms) from the start of the attempt that obtained it. NaN, infinite,
// negative or ≥ 1 values make Obtain fail with ErrInvalidArgument.
func WithDriftFactor(factor float64) Option { return driftOption(factor) }

type nodeTimeoutOption time.Duration

func (n nodeTimeoutOption) apply(o *options) { o.nodeTimeout = time.Duration(n) }
func (n nodeTimeoutOption) String() string {
	return fmt.Sprintf("WithNodeTimeout(%v)", time.Duration(n))
}

// WithNodeTimeout sets how long a Redlock waits for each node in one attempt.
// Default DefaultNodeTimeout (100ms), capped at TTL/10. It must be positive.
// Ignored by a single-node Locker, whose calls are bounded by ctx and the
// client's own timeouts.
func WithNodeTimeout(d time.Duration) Option { return nodeTimeoutOption(d) }

type pipeliningOption bool

func (p pipeliningOption) apply(o *options) { o.pipelining = bool(p) }
func (p pipeliningOption) String() string   { return fmt.Sprintf("WithPipelining(%v)", bool(p)) }

// WithPipelining turns on or off the batching of lock commands from
// concurrent goroutines into shared pipelines (go-redis's autopipeliner,
// which go-redis marks experimental). Default on. A lone caller still pays
// one round trip per call. It takes effect on New and NewRedlock only; on
// Obtain and Do it is ignored. When the client cannot autopipeline (a
// redis.Ring), plain calls are used.
func WithPipelining(enabled bool) Option { return pipeliningOption(enabled) }

// A RetryStrategy tells Obtain how long to wait before each retry. It must
// be safe for concurrent use and keep no state between calls: the attempt
// number is passed in, so one strategy value can serve every Obtain.
type RetryStrategy interface {
	// NextBackoff returns the delay before retry number n (n ≥ 1) and
	// whether to retry at all.
	NextBackoff(n int) (time.Duration, bool)
}

type noRetry struct{}

func (noRetry) NextBackoff(int) (time.Duration, bool) { return 0, false }
func (noRetry) String() string                        { return "NoRetry()" }

// NoRetry makes Obtain try once. It is the default strategy.
func NoRetry() RetryStrategy { return noRetry{} }

type linearBackoff time.Duration

func (l linearBackoff) NextBackoff(int) (time.Duration, bool) { return time.Duration(l), true }
func (l linearBackoff) String() string {
	return fmt.Sprintf("LinearBackoff(%v)", time.Duration(l))
}

// LinearBackoff retries forever (until ctx is done) with a fixed delay.
// A delay ≤ 0 retries at once. Combine with LimitRetry to bound the count.
func LinearBackoff(d time.Duration) RetryStrategy {
	if d < 0 {
		d = 0
	}
	return linearBackoff(d)
}

type exponentialBackoff struct{ min, max time.Duration }

func (e exponentialBackoff) NextBackoff(n int) (time.Duration, bool) {
	d := e.max
	if n < 1 {
		n = 1
	}
	if n <= 62 {
		if grown := e.min << (n - 1); grown > 0 && grown < e.max && grown>>(n-1) == e.min {
			d = grown
		}
	}
	// Jitter: a uniform delay in [d/2, d], so that waiters that started
	// together drift apart.
	if half := d / 2; half > 0 {
		d = half + rand.N(d-half+1)
	}
	return d, true
}

func (e exponentialBackoff) String() string {
	return fmt.Sprintf("ExponentialBackoff(%v, %v)", e.min, e.max)
}

// ExponentialBackoff retries forever (until ctx is done) with a delay that
// doubles from min up to max, each delay jittered uniformly down to half its
// value. min ≤ 0 is taken as 1ms; max below min is taken as min.
func ExponentialBackoff(min, max time.Duration) RetryStrategy {
	if min <= 0 {
		min = time.Millisecond
	}
	if max < min {
		max = min
	}
	return exponentialBackoff{min: min, max: max}
}

type limitRetry struct {
	s   RetryStrategy
	max int
}

func (l limitRetry) NextBackoff(n int) (time.Duration, bool) {
	if n > l.max || l.s == nil {
		return 0, false
	}
	return l.s.NextBackoff(n)
}

func (l limitRetry) String() string { return fmt.Sprintf("LimitRetry(%v, %d)", l.s, l.max) }

// LimitRetry allows at most max retries (max+1 attempts in all) of s.
// max ≤ 0 means no retry; a nil s means no retry.
func LimitRetry(s RetryStrategy, max int) RetryStrategy {
	return limitRetry{s: s, max: max}
}

// rejectOptions returns an error matching ErrInvalidArgument that names the
// first of opts, the options given to one call, for which bad reports that
// the call cannot honour it (see "Options and calls" in the package doc).
// Defaults given to New or NewRedlock are not checked: they serve every
// call, and a call they do not apply to leaves them out.
func rejectOptions(call string, opts []Option, bad func(Option) bool) error {
	for _, opt := range opts {
		if opt != nil && bad(opt) {
			return invalidf("%v does not apply to %s", opt, call)
		}
	}
	return nil
}
