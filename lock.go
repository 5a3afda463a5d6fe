package distlock

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// A Locker takes locks on one Redis deployment (a single node, a primary
// with replicas behind Sentinel, or a Redis Cluster). Create it with New; it
// is safe for concurrent use and holds no goroutine of its own.
//
// A single-node lock is as safe as that node: if it restarts without
// persistence, or fails over to a replica that had not yet received the lock
// (replication is asynchronous), a second holder can get the same lock.
// Fencing does not help against that failover: the fence counter lives on
// the same node and is lost with the lock, so the new holder can draw the
// same fence as the stale one, and the guarded resource cannot tell them
// apart. WithFencing protects against a holder paused past its TTL on a
// deployment that keeps its data. WithReplicas closes the failover case: a
// lock (and fence) that n replicas acknowledged survives a failover to one
// of them. Against the loss of a node's data use a Redlock over independent
// nodes (with persistence: see Redlock).
type Locker struct {
	conns   *conns // the client, and its autopipeliner for concurrent calls
	opts    options
	waiters *waiters // blocked callers, woken on release
	err     error    // set by New on bad input, returned by every call
	id      string   // tells its waiting writers' claims (shared.go) from others'
}

// New returns a Locker that takes locks through client, with opts as the
// default options of every Obtain and Do. A nil client does not panic: every
// call of the returned Locker fails with an error matching
// ErrInvalidArgument. So does WithToken among opts: it is a per-call option
// only (as a default, every Obtain would re-attach to the lock of every
// other caller, and none would exclude another).
//
// Calls are bounded by their ctx only as far as the client allows: go-redis
// applies ctx deadlines to socket I/O only with
// redis.Options.ContextTimeoutEnabled, and otherwise its ReadTimeout and
// WriteTimeout bound each command. Keep those well below the TTL.
//
// Callers blocked in Obtain (WithBlocking) share one subscription
// connection per Locker, on which releases are announced; it is opened
// when the first caller starts waiting and closed when the last one stops
// (about 3s later when they waited their turn: the Locker keeps its place
// in the queue for 1s, and listens for a turn still on its way for 2s
// more), so an idle Locker holds no connection or goroutine of its own.
//
// Unless WithPipelining(false) is given, New asks client for its
// autopipeliner (client.AutoPipeline), so that lock commands from concurrent
// goroutines share round trips; a command sent while no other is in flight
// goes through the plain client. The autopipeliner lives as long as the
// client: Close the client to stop it.
func New(client redis.UniversalClient, opts ...Option) *Locker {
	lk := &Locker{opts: defaultOptions().with(opts)}
	if isNil(client) {
		lk.err = invalidf("nil Redis client")
		return lk
	}
	if lk.opts.token != "" {
		lk.err = errTokenDefault
		return lk
	}
	if lk.opts.share.on {
		lk.err = errSharedDefault
		return lk
	}
	lk.conns = newConns(client, lk.opts.pipelining)
	lk.id = uuid.NewString()
	lk.waiters = newWaiters([]redis.UniversalClient{client})
	lk.waiters.q = newQueue(lk, lk.waiters, client)
	return lk
}

// check returns the error every call of lk fails with, if any: bad input
// to New, or a Locker not made by New.
func (lk *Locker) check() error {
	if lk == nil || (lk.err == nil && lk.conns == nil) {
		return invalidf("Locker not created by New")
	}
	return lk.err
}

// isNil reports whether an interface holds nil or a nil pointer.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

// callOptions resolves and checks the options of one call.
func callOptions(defaults options, key string, opts []Option) (options, error) {
	o := defaults.with(opts)
	if key == "" {
		return o, invalidf("empty key")
	}
	return o, o.validate()
}

// Obtain takes the lock named key. By default it tries once and returns an
// error matching ErrNotObtained when someone else holds the lock; WithRetry
// and WithBlocking make it try again. When ctx ends first the error matches
// both ErrNotObtained and ctx.Err(). A Redis error is returned wrapped, never
// as ErrNotObtained; bad input returns an error matching ErrInvalidArgument.
//
// The returned Lock is held until Release, until ValidUntil unless refreshed
// (WithAutoRefresh does that), or until Redis says it is gone; Done and Err
// tell which.
func (lk *Locker) Obtain(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	if err := lk.check(); err != nil {
		return nil, fmt.Errorf("obtain %q: %w", key, err)
	}
	o, err := callOptions(lk.opts, key, opts)
	if err != nil {
		return nil, fmt.Errorf("obtain %q: %w", key, err)
	}
	if o.share.on {
		return lk.obtainShared(ctx, key, o)
	}
	rk := lockKey(o.prefix, key)
	var intent writerIntent // stops new shared leases while this caller waits
	// The plain SET NX PX path needs no script; the script is needed to draw
	// a fence, to re-attach a caller's token, or to learn the holder's TTL
	// so that a blocked caller never sleeps past the holder's expiry.
	// A caller that waits its turn (fair) makes its first attempt with
	// SET NX too: uncontended, that is all it costs; contended, its next
	// attempt queues it (acquire_queued.lua, which tells the holder's TTL).
	fair := o.fair && o.blocking && o.token == "" && o.repl.n == 0 && !lk.waiters.q.disabled()
	plain := !o.fencing && o.token == "" && (!o.blocking || fair)
	var notReplicated error // the last attempt's, while retries are left
	co := newObtainObs(o, key, false)
	try := func(ctx context.Context) (*Lock, time.Duration, error) {
		co.attempt()
		// A fresh token per attempt: the clean-up of a failed attempt
		// (which may land late) can then never delete what a later
		// attempt took, as it would if that attempt re-took the key
		// through acquire.lua's re-attach rule with the same token.
		token := attemptToken(o)
		start := time.Now()
		notReplicated = nil
		ok, fence, holderTTL, readers, err := lk.acquire(ctx, plain, rk, token, o)
		if errors.Is(err, ErrNotReplicated) {
			// The lock was given back: retried like contention, with the
			// strategy's delay (holder TTL unknown).
			notReplicated = err
			return nil, -1, nil
		}
		if err != nil {
			if o.token == "" {
				// Only a fresh token is surely ours alone: a caller's
				// token may be that of a live Lock being re-attached to.
				lk.abandon(ctx, err, rk, token)
			}
			return nil, 0, err
		}
		if !ok {
			co.contended()
			if readers {
				intent.waiting(ctx, lk, rk, o)
			}
			return nil, holderTTL, nil
		}
		l := newLock(lk, key, rk, token, fence, o, start)
		if l == nil {
			// Obtained too late to be of use: the validity is already
			// spent. Give the key back and count it as not obtained.
			if o.token == "" {
				lk.abandon(ctx, nil, rk, token)
			}
			return nil, 0, nil
		}
		return l, 0, nil
	}
	c := obtainCall{key: key, rk: rk, o: o, w: lk.waiters, fair: fair}
	var tryQueued attemptFunc
	if fair {
		tryQueued = func(ctx context.Context) (*Lock, time.Duration, error) {
			co.attempt()
			l, ttl, err := lk.waiters.q.attempt(ctx, key, rk, o)
			switch {
			case errors.Is(err, errNoQueue):
				return try(ctx) // this user may not queue: a plain attempt
			case errors.Is(err, errReadersHold):
				intent.waiting(ctx, lk, rk, o)
				err = nil
			}
			if l == nil && err == nil {
				co.contended()
			}
			return l, ttl, err
		}
	}
	if o.blocking {
		c.h = &heir{ctx: ctx, key: key, o: o} // a release of lk may hand the lock over
	}
	l, err := obtainWith(ctx, try, tryQueued, c)
	intent.done(ctx, lk, rk, err == nil)
	if err != nil && notReplicated != nil && ctx.Err() == nil {
		// The last attempt failed for want of replicas, not contention.
		return co.done(nil, fmt.Errorf("obtain %q: %w", key, notReplicated))
	}
	return co.done(l, err)
}

// attemptToken returns the value one attempt to take a lock stores: its
// token, the caller's (WithToken) or else a fresh random UUID never reused
// by another attempt, with the owner label (owner.go).
func attemptToken(o options) string {
	if o.token != "" {
		return storedValue(o.token, o.owner)
	}
	return newStoredValue(o.owner)
}

// acquire makes one attempt on the node. holderTTL is the remaining TTL of
// the current holder when known, else -1.
func (lk *Locker) acquire(ctx context.Context, plain bool, rk, token string, o options) (ok bool, fence int64, holderTTL time.Duration, readers bool, err error) {
	if o.repl.n > 0 {
		return lk.acquireReplicated(ctx, rk, token, o)
	}
	run := lk.conns.get()
	defer lk.conns.done()
	if plain {
		// Never re-sent: a second SET NX would find this attempt's own key
		// and answer "held by another".
		cmd := redis.NewCmd(ctx, "set", rk, token, "px", o.ttl.Milliseconds(), "nx")
		switch err := run.Process(ctx, onceCmd{cmd}); {
		case err == nil:
			return true, 0, 0, false, nil
		case errors.Is(err, redis.Nil):
			// Who holds it is not known: maybe shared leases.
			return false, 0, -1, true, nil
		default:
			return false, 0, 0, false, err
		}
	}
	keys, args := acquireCall(rk, token, o)
	res, err := acquireScript.Run(ctx, run, keys, args...).Int64Slice()
	if err != nil {
		return false, 0, 0, false, err
	}
	if len(res) != 2 {
		return false, 0, 0, false, fmt.Errorf("distlock: unexpected acquire reply %v", res)
	}
	if res[0] == acquireTaken {
		return true, res[1], 0, false, nil
	}
	return false, 0, msTTL(res[1]), res[0] == acquireReaders, nil
}

// msTTL converts a PTTL reply to a holder TTL: -1 when unknown (no expiry),
// 0 when the key is already gone.
func msTTL(ms int64) time.Duration {
	switch {
	case ms == -2:
		return 0
	case ms < 0:
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// abandon gives back a lock whose attempt failed after the command may have
// reached Redis (a timeout, a cancelled ctx, or a validity already spent),
// so that it does not sit there until its TTL. It is best effort and bounded
// by abandonTimeout. A Redis error reply means nothing was written.
func (lk *Locker) abandon(ctx context.Context, cause error, rk, token string) {
	lk.abandonPassing(ctx, cause, rk, token, "")
}

// abandonPassing is abandon passing over the queue entry pass (a caller
// that gives up does not want the lock handed to its own entry).
func (lk *Locker) abandonPassing(ctx context.Context, cause error, rk, token, pass string) {
	var rerr redis.Error
	if cause != nil && errors.As(cause, &rerr) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	run := lk.conns.get()
	defer lk.conns.done()
	op := releaseOp(rk, token, lk.waiters.publishArg, pass, randomHex(8)) // a failed attempt's token may be a WithToken one
	_ = releaseScript.Run(ctx, run, op.keys, op.args...).Err()
}

// abandonTimeout bounds the clean-up of a failed attempt, as far as the
// client applies ctx deadlines: a command through the autopipeliner, or a
// plain command on a client with redis.Options.ContextTimeoutEnabled.
// Otherwise a plain command is bounded by the client's WriteTimeout and
// ReadTimeout (go-redis defaults: 3s each), and a dial by its DialTimeout
// (5s); keep those short where a stalled node must not hold up a failed
// Obtain.
const abandonTimeout = 250 * time.Millisecond

// Do runs fn while holding the lock named key, and releases it when fn
// returns. The lock is auto-refreshed; fn's ctx is cancelled as soon as the
// lock is lost (context.Cause then matches ErrNotHeld). Do returns fn's
// error; when the lock was lost while fn ran, the error also matches
// ErrNotHeld. When the lock cannot be obtained fn does not run and Do
// returns Obtain's error (ErrNotObtained when held by someone else).
func (lk *Locker) Do(ctx context.Context, key string, fn func(context.Context) error, opts ...Option) error {
	if fn == nil {
		return fmt.Errorf("do %q: %w", key, invalidf("nil fn"))
	}
	l, err := lk.Obtain(ctx, key, withAutoRefresh(opts)...)
	if err != nil {
		return err
	}
	return l.guard(ctx, fn)
}

// withAutoRefresh returns a copy of opts with WithAutoRefresh appended.
func withAutoRefresh(opts []Option) []Option {
	all := make([]Option, 0, len(opts)+1)
	return append(append(all, opts...), WithAutoRefresh())
}

// The node backend: the Lock's Redis operations on one deployment.

func (lk *Locker) refresh(ctx context.Context, l *Lock, ttl time.Duration) error {
	if l.repl.n > 0 {
		return lk.refreshReplicated(ctx, l, ttl)
	}
	run := lk.conns.get()
	defer lk.conns.done()
	n, err := refreshScript.Run(ctx, run, []string{l.rkey}, l.token, ttl.Milliseconds()).Int64()
	if err != nil {
		return err
	}
	return refreshAnswer(n)
}

func (lk *Locker) release(ctx context.Context, l *Lock) error {
	if tk := lk.waiters.claim(l.rkey); tk != nil {
		return lk.handOver(ctx, l, tk)
	}
	nonce := ""
	if l.reused {
		nonce = randomHex(8)
	}
	op := releaseOp(l.rkey, l.token, lk.waiters.publishArg, lk.waiters.q.passOver(l.rkey), nonce)
	run := lk.conns.get()
	n, err := sendOnce(ctx, run, &op).Int64()
	lk.conns.done()
	if err != nil {
		err = unknownOutcome(err)
		if errors.Is(err, ErrUnknownOutcome) {
			l.releaseUnsure.Store(true)
		}
		return err
	}
	switch n {
	case releasedUnannounced:
		lk.waiters.lostWakeups.Add(1)
	case releasedHandedOver:
		lk.waiters.q.handedOver(l.rkey)
		l.reportHandOver(true)
	}
	return l.releaseFound(n)
}

// releaseFound turns release.lua's answer into Release's error. A lock
// found not held while it was still valid, after a release of unknown
// outcome, was deleted by that release: gone, or taken since by another
// holder, who could not have taken it from a valid lock otherwise.
func (l *Lock) releaseFound(n int64) error {
	switch {
	case n == 1 || n == releasedUnannounced || n == releasedHandedOver:
		return nil
	case l.releaseUnsure.Load() && time.Now().Before(l.ValidUntil()):
		return nil
	case n == releaseForced:
		return ErrForceReleased
	case n < 0:
		return errTakenOver
	}
	return errVanished
}

// sendOnce runs op's script (EVALSHA, then EVAL on NOSCRIPT) through run, and
// never lets go-redis send it a second time after a network error: the
// first may have run, and a second run would answer for what the first
// did (a release finding nothing left to release).
func sendOnce(ctx context.Context, run runner, op *nodeOp) *redis.Cmd {
	cmd := op.cmd(ctx, false)
	if err := run.Process(ctx, onceCmd{cmd}); isNoScript(err) {
		cmd = op.cmd(ctx, true)
		_ = run.Process(ctx, onceCmd{cmd})
	}
	return cmd
}

// onceCmd is a command go-redis must not re-send after a network error.
type onceCmd struct{ *redis.Cmd }

// NoRetry implements redis.Cmder.
func (onceCmd) NoRetry() bool { return true }

func (lk *Locker) pttl(ctx context.Context, l *Lock) (time.Duration, error) {
	run := lk.conns.get()
	defer lk.conns.done()
	ms, err := pttlScript.Run(ctx, run, []string{l.rkey}, l.token).Int64()
	if err != nil {
		return 0, err
	}
	if ms == pttlNotHeld {
		return 0, errGone
	}
	return time.Duration(ms) * time.Millisecond, nil
}
