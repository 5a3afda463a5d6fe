package distlock

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Redlock takes locks on N independent Redis nodes (typically 3 or 5
// single primaries that are not replicas of each other), following the
// Redlock algorithm of the Redis distributed-lock spec, so that a lock
// survives the crash, restart or isolation of a minority of them. Create it
// with NewRedlock; it is safe for concurrent use and holds no goroutine of
// its own. Its Obtain and Do return the same *Lock as a Locker, with the
// same options.
//
// An attempt sends the same random token to every node at once, each node
// bounded by the node timeout (WithNodeTimeout: DefaultNodeTimeout, 100ms,
// capped at TTL/10). It succeeds when at least N/2+1 nodes took the lock and
// the validity is still positive: ValidUntil = start + TTL − (TTL×drift +
// 2ms), with start the moment the attempt began on the monotonic clock, so
// the time the attempt took is already subtracted. Otherwise the attempt
// releases the key on every node, including the ones that did not answer,
// and Obtain retries as the retry strategy says (Redlock randomises each of
// its delays to between half and all of its value, so that competing
// clients drift apart). With WithBlocking a caller waits for a release
// announced by any node, as on a Locker, and re-checks only as a fallback
// (default a jittered 200ms doubling to 2s) or at the holder's expiry.
//
// Refresh, auto-refresh and TTL need a quorum of nodes that still hold the
// lock, within the lock's validity; Done closes no later than ValidUntil
// when no quorum confirms a refresh; a refresh also takes the key again on
// a node that lost it, once a quorum confirmed the hold. Release goes to
// every node that may hold the lock.
//
// Errors: an error matching ErrNotObtained means other holders decided the
// outcome. When nodes failed (timeouts, connection errors, error replies)
// the error carries a *QuorumError with one *NodeError per failing node
// (errors.As); if the failing nodes alone made a quorum impossible it does
// not match ErrNotObtained and Obtain returns at once instead of retrying.
//
// Fencing (WithFencing): each node of the quorum increments its own counter;
// the lock's fence is the highest of those values, and it is written back
// (raised, never lowered) on a quorum of nodes that still hold the lock
// before Obtain returns. Any later quorum overlaps that one, so fences
// strictly increase even when successive quorums differ. The limit: a node
// that restarts without its data forgets its counter, and if enough such
// nodes make up a later quorum, a fence can repeat or go back. Persist the
// nodes (appendonly with fsync) when you rely on fences.
//
// Safety assumptions, from the spec: clocks of the nodes and of this process
// advance at about the same rate (the drift factor bounds the difference;
// wall-clock jumps do not matter, but a node whose clock runs fast expires
// keys early); process pauses and network delays are shorter than the TTL;
// and a node that lost its data (restart without fsync'ed persistence) stays
// down for at least the longest TTL in use before it rejoins ("delayed
// restart"), otherwise a lock held by a bare quorum can be taken twice.
type Redlock struct {
	nodes   []*rlNode
	quorum  int
	opts    options
	waiters *waiters // blocked callers, woken on release
	err     error    // set by NewRedlock on bad input, returned by every call
}

// NewRedlock returns a Redlock over the given independent nodes, with opts
// as the default options of every Obtain and Do. The quorum is
// len(clients)/2+1. Bad input does not panic: with fewer than 3 clients, a
// nil client in the list, the same node twice (the same client value, or
// two *redis.Client with the same Options().Addr), or WithToken among opts
// (a per-call option only), every call of the returned Redlock fails with
// an error matching ErrInvalidArgument that names the problem.
//
// Unless WithPipelining(false) is given, NewRedlock asks each client for its
// deferred autopipeliner (AsyncAutoPipeline): commands from concurrent
// callers share round trips and a fan-out needs no goroutine per node. It
// lives as long as the client: Close the client to stop it. A client that
// cannot autopipeline (a redis.Ring) gets plain calls, one goroutine per
// node per operation. Clients should have read and write timeouts not much
// longer than the node timeout: a paused node holds up the commands queued
// behind it on that client until they expire.
func NewRedlock(clients []redis.UniversalClient, opts ...Option) *Redlock {
	defaults := defaultOptions()
	defaults.fair = false // a quorum of queues gives no one order: Redlock barges
	r := &Redlock{opts: defaults.with(opts)}
	if r.err = checkNodes(clients); r.err != nil {
		return r
	}
	if r.opts.token != "" {
		r.err = errTokenDefault
		return r
	}
	if r.opts.repl != (replication{}) {
		r.err = errReplicasRedlock
		return r
	}
	if r.opts.share.on {
		r.err = errSharedDefault
		return r
	}
	if r.opts.fair {
		r.err = errFairRedlock
		return r
	}
	r.quorum = len(clients)/2 + 1
	r.waiters = newWaiters(clients)
	r.nodes = make([]*rlNode, len(clients))
	for i, c := range clients {
		nd := &rlNode{idx: i, client: c, addr: nodeAddr(c)}
		nd.eval.Store(allScripts())
		if r.opts.pipelining {
			if ap, err := c.AsyncAutoPipeline(); err == nil {
				nd.ap = ap
			}
		}
		r.nodes[i] = nd
	}
	return r
}

// checkNodes reports the first problem with the node list.
func checkNodes(clients []redis.UniversalClient) error {
	if len(clients) == 0 {
		return invalidf("no Redis clients")
	}
	addrs := make(map[string]int, len(clients))
	for i, c := range clients {
		if isNil(c) {
			return invalidf("nil Redis client at index %d", i)
		}
		for j := range i {
			if sameClient(clients[j], c) {
				return invalidf("clients %d and %d are the same client; Redlock needs independent nodes", j, i)
			}
		}
		if a := nodeAddr(c); a != "" {
			if j, ok := addrs[a]; ok {
				return invalidf("clients %d and %d both connect to %s; Redlock needs independent nodes", j, i, a)
			}
			addrs[a] = i
		}
	}
	if len(clients) < minRedlockNodes {
		return invalidf("%d Redis clients: Redlock needs at least %d independent nodes (with fewer, the loss of any one node stops it; use a Locker for one node)", len(clients), minRedlockNodes)
	}
	return nil
}

// minRedlockNodes is the least number of nodes of a Redlock: with 3, the
// quorum of 2 survives the loss of one.
const minRedlockNodes = 3

// sameClient reports whether a and b are the same client value, without
// panicking on values that cannot be compared.
func sameClient(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Type() != vb.Type() {
		return false
	}
	if va.Kind() == reflect.Pointer {
		return va.Pointer() == vb.Pointer()
	}
	return va.Comparable() && va.Equal(vb)
}

// nodeAddr is the address of a node's client when it tells one.
func nodeAddr(c redis.UniversalClient) string {
	switch c := c.(type) {
	case interface{ Options() *redis.Options }:
		// A Sentinel-backed client reports this placeholder, not an address.
		if a := c.Options().Addr; a != "FailoverClient" {
			return a
		}
	case interface{ Options() *redis.ClusterOptions }:
		return strings.Join(c.Options().Addrs, ",")
	}
	return ""
}

// defaults returns the options given to NewRedlock.
func (r *Redlock) defaults() options {
	if r == nil {
		return defaultOptions()
	}
	return r.opts
}

var _ obtainer = (*Redlock)(nil)

// check returns the error every call of r fails with, if any: bad input to
// NewRedlock, or a Redlock not made by NewRedlock.
func (r *Redlock) check() error {
	if r == nil || (r.err == nil && len(r.nodes) == 0) {
		return invalidf("Redlock not created by NewRedlock")
	}
	return r.err
}

// Obtain takes the lock named key on a quorum of the nodes. By default it
// tries once; WithRetry and WithBlocking make it try again. It returns:
//
//   - an error matching ErrNotObtained when other holders kept it from a
//     quorum (also when ctx ended first, then matching ctx.Err() too); if
//     failing nodes contributed, the last attempt's *QuorumError is wrapped
//     in it as well;
//   - a *QuorumError (errors.As) that does not match ErrNotObtained when
//     failing nodes alone made a quorum impossible, at once and without
//     retrying; each *NodeError says what happened on its node, e.g.
//     ErrNodeTimeout;
//   - an error matching ErrInvalidArgument on bad input.
//
// The returned Lock is held until Release, until ValidUntil unless
// refreshed (WithAutoRefresh does that), or until a refresh finds it gone
// from too many nodes; Done and Err tell which.
func (r *Redlock) Obtain(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("obtain %q: %w", key, err)
	}
	o, err := callOptions(r.opts, key, opts)
	if err == nil && o.repl != (replication{}) {
		err = errReplicasRedlock
	}
	if err == nil && o.share.on {
		err = errSharedRedlock
	}
	if err == nil && o.fair {
		err = errFairRedlock
	}
	if err != nil {
		return nil, fmt.Errorf("obtain %q: %w", key, err)
	}
	o.retry = jitteredRetry{o.retry}
	b := &redlockBackend{r: r, nodeTimeout: min(o.nodeTimeout, o.ttl/10), obs: newObtainObs(o, key, true)}
	// As for a Locker: plain SET NX PX unless a fence, a re-attach or the
	// holder's TTL (to bound a blocked caller's wait) needs the script.
	plain := !o.fencing && o.token == "" && !o.blocking
	rk := lockKey(o.prefix, key)
	var last *QuorumError
	try := func(ctx context.Context) (*Lock, time.Duration, error) {
		// A fresh token per attempt, so that the release of a failed
		// attempt, however late it lands, cannot delete what a later
		// attempt took (acquire.lua re-attaches a key to its own token).
		b.obs.attempt()
		l, holderTTL, qe, fatal := b.attempt(ctx, key, rk, attemptToken(o), plain, o)
		last = qe
		if fatal {
			return nil, 0, qe
		}
		return l, holderTTL, nil
	}
	l, err := obtain(ctx, try, obtainCall{key: key, rk: rk, o: o, w: r.waiters})
	if err != nil && last != nil && errors.Is(err, ErrNotObtained) {
		err = fmt.Errorf("%w (last attempt: %w)", err, last)
	}
	return b.obs.done(l, err)
}

// Do runs fn while holding the lock named key on a quorum of the nodes, and
// releases it when fn returns, exactly as Locker.Do: the lock is
// auto-refreshed, fn's ctx is cancelled as soon as the lock is lost
// (context.Cause then matches ErrNotHeld), and Do returns fn's error, joined
// with an error matching ErrNotHeld when the lock was lost while fn ran.
// When the lock cannot be obtained fn does not run and Do returns Obtain's
// error.
func (r *Redlock) Do(ctx context.Context, key string, fn func(context.Context) error, opts ...Option) error {
	if fn == nil {
		return fmt.Errorf("do %q: %w", key, invalidf("nil fn"))
	}
	l, err := r.Obtain(ctx, key, withAutoRefresh(opts)...)
	if err != nil {
		return err
	}
	return l.guard(ctx, fn)
}

// jitteredRetry randomises each delay of a strategy to between half and all
// of its value: the Redlock spec retries after a random delay so that
// clients that failed together do not collide again.
type jitteredRetry struct{ s RetryStrategy }

func (j jitteredRetry) NextBackoff(n int) (time.Duration, bool) {
	d, ok := j.s.NextBackoff(n)
	if ok && d > 1 {
		half := d / 2
		d = half + rand.N(d-half+1)
	}
	return d, ok
}

func (j jitteredRetry) String() string { return fmt.Sprintf("jittered(%v)", j.s) }

// redlockBackend is the backend of one Lock obtained from a Redlock: it
// remembers the node timeout that Obtain resolved.
type redlockBackend struct {
	r           *Redlock
	nodeTimeout time.Duration
	// mayHold marks the nodes that may hold the lock: all but those that
	// refused the successful attempt (held by another). Set once, before
	// the Lock is handed out; refresh, release and TTL ask only these.
	mayHold  []bool
	excluded int        // nodes not in mayHold
	obs      *obtainObs // the obtaining call's events (observer.go); nil: none
}

var _ backend = (*redlockBackend)(nil)

// attempt makes one Redlock attempt. On failure it has released the key on
// every node; qe describes failing nodes (nil when there were none) and
// fatal says whether Obtain must stop. holderTTL is how long until enough
// other holders' keys expire for a quorum to be possible, -1 when unknown.
func (b *redlockBackend) attempt(ctx context.Context, key, rk, token string, plain bool, o options) (l *Lock, holderTTL time.Duration, qe *QuorumError, fatal bool) {
	r := b.r
	n := len(r.nodes)
	start := time.Now()
	ttlMs := o.ttl.Milliseconds()
	var op nodeOp
	if plain {
		// Never re-sent by go-redis: a second SET NX would find this
		// attempt's own key and count the node as held by another.
		op.raw = []any{"set", rk, token, "px", ttlMs, "nx"}
		op.once = true
	} else {
		op.script = acquireScript
		op.keys, op.args = acquireCall(rk, token, o)
	}
	fences := make([]int64, n)
	var holders []time.Duration // remaining TTLs of other holders' keys
	res := r.fanOut(ctx, b.nodeTimeout, untilQuorum, nil, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		if plain {
			if errors.Is(cmd.Err(), redis.Nil) {
				return vRefused, nil
			}
			return vOK, nil
		}
		v, err := cmd.Int64Slice()
		switch {
		case err != nil:
			return vFailed, err
		case len(v) != 2:
			return vFailed, fmt.Errorf("distlock: unexpected acquire reply %v", v)
		case v[0] == 1:
			fences[i] = v[1]
			return vOK, nil
		}
		holders = append(holders, msTTL(v[1]))
		return vRefused, nil
	})

	if res.ok >= r.quorum {
		var fence int64
		raised := true
		if o.fencing {
			var rres fanResult
			fence, rres = b.raiseFence(ctx, rk, token, res.verdicts, fences)
			if rres.ok < r.quorum {
				raised = false
				res.leftBy(rres)
			}
		}
		if raised {
			b.setMayHold(res.verdicts)
			if l = newLock(b, key, rk, token, fence, o, start); l != nil {
				b.observeAttempt(res, false)
				return l, 0, nil, false
			}
			// Obtained too late to be of use: the validity is already
			// spent. Give the keys back and count it as not obtained.
		}
	}

	b.abandon(ctx, rk, token, res.verdicts)
	qe, fatal = r.obtainOutcome(res)
	b.observeAttempt(res, fatal)
	return nil, r.holderTTL(res, holders), qe, fatal
}

// raiseFence writes the highest fence drawn by the nodes that took the lock
// back to those nodes, where they still hold it. It returns the fence and
// the raise's result; the fence may be handed out only with a quorum.
func (b *redlockBackend) raiseFence(ctx context.Context, rk, token string, took []verdict, fences []int64) (int64, fanResult) {
	sel := make([]bool, len(took))
	var fence int64
	for i, v := range took {
		if v == vOK {
			sel[i] = true
			fence = max(fence, fences[i])
		}
	}
	op := nodeOp{script: raiseFenceScript, keys: []string{rk, fenceKey(rk)}, args: []any{token, fence}}
	res := b.r.fanOut(ctx, b.nodeTimeout, untilQuorum, sel, &op, func(_ int, cmd *redis.Cmd) (verdict, error) {
		switch n, err := cmd.Int64(); {
		case err != nil:
			return vFailed, err
		case n == 1:
			return vOK, nil
		}
		return vFailed, errors.New("distlock: the lock was gone from the node before its fence was raised")
	})
	return fence, res
}

// holderTTL estimates how long until a quorum can be free: the time until
// the keys of other holders expire on enough nodes. -1 when unknown.
func (r *Redlock) holderTTL(res fanResult, holders []time.Duration) time.Duration {
	need := res.refused - (len(r.nodes) - r.quorum) // refusals that must go away
	if need <= 0 || need > len(holders) {
		return -1
	}
	slices.Sort(holders)
	if holders[0] < 0 { // a key without expiry: unknown
		return -1
	}
	return holders[need-1]
}

// abandon releases the key of a failed attempt on every node that may hold
// it: all but those that refused the attempt (held by another, so nothing
// of ours was written), including the ones that did not answer. It is best
// effort: it waits for the nodes that answered the attempt, at most the
// node timeout, and does not wait for nodes that timed out (their release
// is still sent).
func (b *redlockBackend) abandon(ctx context.Context, rk, token string, took []verdict) {
	sel := make([]bool, len(took))
	mine := false
	for i, v := range took {
		sel[i] = v != vRefused
		mine = mine || sel[i]
	}
	if !mine {
		return
	}
	op := nodeOp{script: releaseScript, keys: []string{rk}, args: []any{token, b.r.waiters.publish}}
	b.r.fanOut(context.WithoutCancel(ctx), b.nodeTimeout, skipSlow, sel, &op, ignoreAnswer)
}

func ignoreAnswer(int, *redis.Cmd) (verdict, error) { return vOK, nil }

// setMayHold records which nodes may hold the lock after a successful
// attempt: all but those that refused it (held by another). Refresh,
// release and TTL ask only those.
func (b *redlockBackend) setMayHold(verdicts []verdict) {
	b.mayHold = make([]bool, len(verdicts))
	b.excluded = 0
	for i, v := range verdicts {
		b.mayHold[i] = v != vRefused
		if v == vRefused {
			b.excluded++
		}
	}
}

// countHeld classifies the answers of scripts that act only where the
// caller's token holds the key: 1 (and the release script's 2: released,
// wake-up not published) is held, anything else is not.
func countHeld(_ int, cmd *redis.Cmd) (verdict, error) {
	switch n, err := cmd.Int64(); {
	case err != nil:
		return vFailed, err
	case n == 1 || n == releasedUnannounced:
		return vOK, nil
	}
	return vRefused, nil
}

// refresh extends the lock on every node and needs a quorum within the
// lock's validity: no node is waited for past ValidUntil. Once a quorum has
// confirmed it, a node where the key was gone (it restarted empty, or the
// key expired there during a partition) is given the key again with SET NX
// (one more round trip, only then), so that the quorum regains its margin;
// a node where another token holds the key is left alone, and a key gone
// from so many nodes that no quorum holds it is reported lost, never
// taken again.
func (b *redlockBackend) refresh(ctx context.Context, l *Lock, ttl time.Duration) error {
	timeout := min(b.nodeTimeout, ttl/10, time.Until(l.ValidUntil()))
	if timeout <= 0 {
		return errExpired
	}
	gone := make([]bool, len(b.r.nodes))
	forced := 0 // nodes where an operator force-released it
	op := nodeOp{script: refreshHealScript, keys: []string{l.rkey}, args: []any{l.token, ttl.Milliseconds()}}
	res := b.r.fanOut(ctx, timeout, untilQuorum, b.mayHold, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		switch n, err := cmd.Int64(); {
		case err != nil:
			return vFailed, err
		case n == 1:
			return vOK, nil
		case n == 2: // the key is gone from the node
			gone[i] = true
		case n == refreshForced:
			forced++
		}
		return vRefused, nil
	})
	if err := b.r.holdOutcome("refresh", res, b.excluded); err != nil {
		return forcedOutcome(err, forced)
	}
	// No heal once the refresh was called off (Release cancels the
	// auto-refresher's ctx before it releases): it would put the key back
	// after the release.
	if slices.Contains(gone, true) && ctx.Err() == nil {
		heal := nodeOp{raw: []any{"set", l.rkey, l.token, "px", ttl.Milliseconds(), "nx"}}
		b.r.fanOut(ctx, timeout, waitAll, gone, &heal, ignoreAnswer)
	}
	return nil
}

// release deletes the lock on every node that may hold it. It succeeds
// when a quorum released it, and matches ErrNotHeld when too many nodes no
// longer held it. Otherwise its outcome is unknown (nodes did not answer):
// a QuorumError matching ErrUnknownOutcome. A release is never re-sent to a
// node by go-redis, where a second run would find the key it deleted gone.
func (b *redlockBackend) release(ctx context.Context, l *Lock) error {
	op := nodeOp{script: releaseScript, keys: []string{l.rkey}, args: []any{l.token, b.r.waiters.publish}, once: true}
	forced := 0 // nodes where an operator force-released it
	res := b.r.fanOut(ctx, b.nodeTimeout, untilQuorum, b.mayHold, &op, func(_ int, cmd *redis.Cmd) (verdict, error) {
		n, err := cmd.Int64()
		switch {
		case err != nil:
			return vFailed, err
		case l.releaseFound(n) == nil:
			return vOK, nil
		case n == releaseForced:
			forced++
		}
		return vRefused, nil
	})
	err := forcedOutcome(b.r.holdOutcome("release", res, b.excluded), forced)
	if errors.Is(err, ErrUnknownOutcome) {
		l.releaseUnsure.Store(true)
	}
	return err
}

// pttl returns what a quorum guarantees: the quorum-th largest remaining TTL
// among the nodes that still hold the lock, so that at least a quorum of
// nodes hold it at least that long. -1ms when that many nodes hold it
// without expiry.
func (b *redlockBackend) pttl(ctx context.Context, l *Lock) (time.Duration, error) {
	r := b.r
	ttls := make([]int64, len(r.nodes))
	op := nodeOp{script: pttlScript, keys: []string{l.rkey}, args: []any{l.token}}
	res := r.fanOut(ctx, b.nodeTimeout, waitAll, b.mayHold, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		ms, err := cmd.Int64()
		switch {
		case err != nil:
			return vFailed, err
		case ms == pttlNotHeld || ms == -2:
			return vRefused, nil
		case ms < 0: // no expiry
			ms = math.MaxInt64
		}
		ttls[i] = ms
		return vOK, nil
	})
	if err := r.holdOutcome("ttl", res, b.excluded); err != nil {
		return 0, err
	}
	return r.quorumTTL(res, ttls), nil
}

// quorumTTL is the TTL a quorum of nodes still gives a lock: the quorum-th
// longest of the TTLs (in ms, math.MaxInt64 for no expiry) of the nodes
// that answered that they hold it, as a TTL fan-out with a quorum found;
// -1ms when a quorum holds it without expiry.
func (r *Redlock) quorumTTL(res fanResult, ttls []int64) time.Duration {
	held := make([]int64, 0, res.ok)
	for i, v := range res.verdicts {
		if v == vOK {
			held = append(held, ttls[i])
		}
	}
	slices.SortFunc(held, func(a, b int64) int { return cmp.Compare(b, a) })
	ms := held[r.quorum-1]
	if ms == math.MaxInt64 {
		return -time.Millisecond
	}
	return time.Duration(ms) * time.Millisecond
}
