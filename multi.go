package distlock

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Multi-key locks: ObtainMulti takes several keys as one lock, all of them
// or none.
//
// Storage. Each key K of a multi-key lock is held exactly as a plain lock
// on K: "<prefix>{K}" holds the lock's token (one token for every key),
// "<prefix>{K}:fence" is K's fence counter, and a release publishes on
// "<prefix>{K}:wake". So a multi-key lock excludes, and is excluded by,
// a plain lock (Obtain, Do, Once, ...) on any of its keys, and a blocked
// caller of either kind is woken by the other's release.
//
// Groups. A Lua script may only touch keys of one Redis Cluster slot (one
// shard of a Ring), so the keys are split into groups, each taken by one
// script atomically (multi_acquire.lua: every key free, then every key set
// with the same token and TTL, or nothing written): on a single server,
// and on every Redlock node, all keys make one group; on a Cluster, the
// keys of one slot; on a Ring, each key alone. The groups are taken one
// after another in one global order (by slot, then by Redis key), the same
// in every process. When a group is held by someone else (or fails), the
// groups already taken are given back (compare-and-delete by this
// attempt's token, publishing), before the attempt returns: no partial
// hold is ever returned, and none is kept while waiting.
//
// Why overlapping callers cannot deadlock: a caller never waits while it
// holds a group (an attempt that fails gives back everything before it
// waits), so no cycle of waiters can form. Why they do not spoil each
// other's attempts either: as every caller takes its groups in the same
// order, two attempts that conflict meet at the first group they share;
// the one that takes it has taken all its groups below it and goes on only
// to groups above it, while the other holds only groups below it, none of
// which the first needs.
//
// Waiting. A blocked caller waits in the room (wait.go) of the key its
// last attempt found held, subscribed to that key's wake channel before
// the attempt that preceded the wait, as for a plain lock. When an attempt
// finds another key held than the one whose room it waits in, the caller
// moves to that key's room: it leaves, joins the other room, subscribes
// and tries again before it waits, so no release between its attempt and
// its wait goes unnoticed.
//
// Tokens. Every attempt draws a fresh token, never given again: the
// clean-up of a failed attempt (which may land late, after the client gave
// up on it) can then never delete what a later attempt took.

// The multi-key lock's scripts (scripts/multi_*.lua).
var (
	//go:embed scripts/multi_acquire.lua
	multiAcquireSrc string
	//go:embed scripts/multi_release.lua
	multiReleaseSrc string
	//go:embed scripts/multi_refresh.lua
	multiRefreshSrc string
	//go:embed scripts/multi_pttl.lua
	multiPTTLSrc string
	//go:embed scripts/multi_raise_fence.lua
	multiRaiseFenceSrc string

	multiAcquireScript    = newScript(multiAcquireSrc)
	multiReleaseScript    = newScript(wakeSrc + multiReleaseSrc)
	multiRefreshScript    = newScript(wakeSrc + multiRefreshSrc)
	multiPTTLScript       = newScript(multiPTTLSrc)
	multiRaiseFenceScript = newScript(multiRaiseFenceSrc)
)

// Answers of multi_refresh.lua.
const (
	multiRefreshOther    = 0 // another token holds a key
	multiRefreshExtended = 1
	multiRefreshGone     = 2 // keys are gone, none held by another
)

// ObtainMulti takes the locks named keys as one lock: all of them or none.
// Each key is held exactly as Obtain would hold it, so the multi-key lock
// excludes, and is excluded by, any other lock on any of its keys (a plain
// Obtain, Do, Once, or another ObtainMulti). Callers whose key sets
// overlap, named in any order, cannot deadlock: an attempt that finds a
// key held gives back whatever it took before it waits or retries.
//
// On a single server (plain, or behind Sentinel) one script takes every
// key atomically, in one round trip. On a Redis Cluster (a
// *redis.ClusterClient) the keys are grouped by hash slot, and the groups
// are taken one after another, each atomically by one script, in a fixed
// order (by slot, then by key) that every process shares; an attempt costs
// one round trip per group, and one that finds a group held gives back the
// groups it took before it returns. On a *redis.Ring each key is a group of
// its own. A client of another type is taken to reach a single server.
//
// Options are those of Obtain. WithBlocking waits: woken by a release of
// the key found held (not polling), re-checking at that holder's expiry or
// after the fallback delay; blocked callers of one Locker queue per key as
// for Obtain, but a multi-key lock is never handed over in-process (its
// release frees every key and wakes every waiter). WithRetry retries,
// WithAutoRefresh keeps every key alive, WithFencing draws a fence per key
// (Lock.Fences; Fence is the first key's), WithReplicas acknowledges each
// group's write on its shard's replicas. WithToken is rejected with
// ErrInvalidArgument: a caller's token would re-attach to keys it still
// holds, so the clean-up of a failed attempt could delete a live hold.
//
// The returned Lock covers every key, and is held only while all of them
// are: Refresh and auto-refresh extend every key and report the lock lost
// (ErrNotHeld; Done closes) as soon as any key no longer carries its
// token, giving back at once the keys it still holds; Release releases
// every key (waking the callers blocked on each) and matches ErrNotHeld
// when any key was no longer held; TTL is the shortest of the keys'. Key
// returns the first key as given, Keys all of them in the caller's order.
//
// It returns an error matching ErrNotObtained when a key is held by
// someone else (also when ctx ended first, then matching ctx.Err() too),
// a wrapped Redis error on failure (never ErrNotObtained), and one
// matching ErrInvalidArgument for no keys, an empty key, a key given
// twice, or a bad option.
func (lk *Locker) ObtainMulti(ctx context.Context, keys []string, opts ...Option) (*Lock, error) {
	label := multiLabel(keys)
	if err := lk.check(); err != nil {
		return nil, fmt.Errorf("obtain %q: %w", label, err)
	}
	o, err := multiOptions(lk.opts, opts, false)
	if err != nil {
		return nil, fmt.Errorf("obtain %q: %w", label, err)
	}
	plan, err := newMultiPlan(o.prefix, keys, shardingOf(lk.conns.client))
	if err != nil {
		return nil, fmt.Errorf("obtain %q: %w", label, err)
	}
	var notReplicated error // the last attempt's, while retries are left
	co := newObtainObs(o, label, false)
	attempt := func(ctx context.Context) (*Lock, time.Duration, string, error) {
		co.attempt()
		notReplicated = nil
		l, holderTTL, held, err := lk.multiAttempt(ctx, plan, attemptToken(o), o)
		if l == nil && err == nil && held != "" {
			co.contended()
		}
		if errors.Is(err, ErrNotReplicated) {
			// Given back: retried like contention (holder TTL unknown).
			notReplicated = err
			return nil, -1, "", nil
		}
		return l, holderTTL, held, err
	}
	l, err := obtainMulti(ctx, label, plan, o, lk.waiters, attempt)
	if err != nil && notReplicated != nil && ctx.Err() == nil {
		return co.done(nil, fmt.Errorf("obtain %q: %w", label, notReplicated))
	}
	return co.done(l, err)
}

// ObtainMulti takes the locks named keys as one lock on a quorum of the
// nodes, all of them or none, as Locker.ObtainMulti does on one
// deployment. Each node takes every key in one script (all or none on that
// node); the attempt succeeds when a quorum of nodes took every key and
// the validity is still positive, with the same validity, drift, retry,
// fencing and error rules as Redlock.Obtain (fences are per key, each
// written back to a quorum). A failed attempt releases every key on every
// node that may hold it, with a token no later attempt uses. Refresh needs
// a quorum of nodes that still hold every key (a node that lost keys gets
// them back once a quorum confirmed the hold), Release goes to every node
// that may hold the lock.
//
// Every node must take all keys in one script: with a node that is a
// Redis Cluster (or Ring) on which the keys fall into different slots
// (shards), ObtainMulti fails with ErrInvalidArgument; give such keys a
// common hash tag in their names, or use single servers as Redlock nodes.
// Bad input and WithToken are rejected as by Locker.ObtainMulti.
func (r *Redlock) ObtainMulti(ctx context.Context, keys []string, opts ...Option) (*Lock, error) {
	label := multiLabel(keys)
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("obtain %q: %w", label, err)
	}
	o, err := multiOptions(r.opts, opts, true)
	if err != nil {
		return nil, fmt.Errorf("obtain %q: %w", label, err)
	}
	plan, err := newMultiPlan(o.prefix, keys, oneServer)
	if err == nil {
		err = r.checkOneGroup(plan)
	}
	if err != nil {
		return nil, fmt.Errorf("obtain %q: %w", label, err)
	}
	o.retry = jitteredRetry{o.retry}
	nodeTimeout := min(o.nodeTimeout, o.ttl/10)
	var last *QuorumError
	attempt := func(ctx context.Context) (*Lock, time.Duration, string, error) {
		// A fresh token per attempt, as for Obtain.
		b := &redlockMultiBackend{rb: &redlockBackend{r: r, nodeTimeout: nodeTimeout}, p: plan}
		l, holderTTL, held, qe, fatal := b.attempt(ctx, attemptToken(o), o)
		last = qe
		if fatal {
			return nil, 0, "", qe
		}
		return l, holderTTL, held, nil
	}
	l, err := obtainMulti(ctx, label, plan, o, r.waiters, attempt)
	if err != nil && last != nil && errors.Is(err, ErrNotObtained) {
		err = fmt.Errorf("%w (last attempt: %w)", err, last)
	}
	return l, err
}

// Keys returns the names of every key the lock covers, without the key
// prefix: for a lock from ObtainMulti, the keys in the order given to it;
// for any other lock, its one key. The slice is the caller's to keep.
func (l *Lock) Keys() []string {
	if m, ok := l.b.(multiLock); ok {
		return slices.Clone(m.plan().keys)
	}
	return []string{l.key}
}

// Fences returns the fencing token drawn for each key when the lock was
// obtained with WithFencing, in the order of Keys: each strictly greater
// than every fence handed out before for its key (see WithFencing). They
// are 0 without WithFencing. For a lock of one key it holds Fence. The
// slice is the caller's to keep.
func (l *Lock) Fences() []int64 {
	if m, ok := l.b.(multiLock); ok {
		if f := m.fences(); f != nil {
			return slices.Clone(f)
		}
		return make([]int64, len(m.plan().keys))
	}
	return []int64{l.fence}
}

// multiLock is the backend of a multi-key lock.
type multiLock interface {
	plan() *multiPlan
	fences() []int64 // per key in the caller's order; nil without fencing
}

var (
	_ multiLock = (*multiBackend)(nil)
	_ multiLock = (*redlockMultiBackend)(nil)
	_ backend   = (*multiBackend)(nil)
	_ backend   = (*redlockMultiBackend)(nil)
)

// multiLabel names keys in messages, which quote it: obtain "[a b]": ...
func multiLabel(keys []string) string { return "[" + strings.Join(keys, " ") + "]" }

// multiOptions resolves and checks the options of one ObtainMulti.
func multiOptions(defaults options, opts []Option, redlock bool) (options, error) {
	if err := rejectOptions("ObtainMulti", opts, func(opt Option) bool {
		switch v := opt.(type) {
		case tokenOption:
			return v != ""
		case sharedOption, limitOption:
			return true // a multi-key lock is exclusive
		}
		return false
	}); err != nil {
		return options{}, err
	}
	o := defaults.with(opts)
	if redlock && o.repl != (replication{}) {
		return o, errReplicasRedlock
	}
	return o, o.validate()
}

// sharding says which keys one script may take together on a client.
type sharding uint8

const (
	oneServer sharding = iota // every key: a single server
	bySlot                    // a Redis Cluster: keys of one hash slot
	byShard                   // a Ring: keys of one hash tag, so each key alone
)

// shardingOf returns the sharding of c's deployment.
func shardingOf(c redis.UniversalClient) sharding {
	switch c.(type) {
	case *redis.ClusterClient:
		return bySlot
	case *redis.Ring:
		return byShard
	}
	return oneServer
}

// multiPlan is how one ObtainMulti takes its keys: fixed for the call,
// shared by its attempts and by the Lock it returns.
type multiPlan struct {
	keys   []string     // as the caller gave them
	rks    []string     // their Redis lock keys, in the caller's order
	groups []multiGroup // in the global order
}

// multiGroup is the keys that one script takes together.
type multiGroup struct {
	idx     []int    // the keys' places in the caller's list, in the group's order
	rks     []string // their lock keys (KEYS of release, refresh and TTL)
	acquire []string // the lock keys, then their fence counters (KEYS of acquire)
}

// newMultiPlan checks keys and splits them into groups as sh requires,
// ordered by slot (on a Cluster), then by Redis key: one order for every
// process, whatever order each caller names the keys in.
func newMultiPlan(prefix string, keys []string, sh sharding) (*multiPlan, error) {
	if len(keys) == 0 {
		return nil, invalidf("no keys")
	}
	p := &multiPlan{keys: slices.Clone(keys), rks: make([]string, len(keys))}
	for i, k := range keys {
		if k == "" {
			return nil, invalidf("empty key at index %d", i)
		}
		p.rks[i] = lockKey(prefix, k)
	}
	if j, i, dup := firstDuplicate(keys); dup {
		return nil, invalidf("key %q given twice (at %d and %d)", keys[i], j, i)
	}
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	slots := make([]int, len(keys)) // all 0 but on a Cluster
	if sh == bySlot {
		for i, rk := range p.rks {
			slots[i] = int(keySlot(rk))
		}
	}
	slot := func(i int) int { return slots[i] }
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(slot(a), slot(b)); c != 0 {
			return c
		}
		return cmp.Compare(p.rks[a], p.rks[b])
	})
	for n, i := range order {
		if n == 0 || sh == byShard || (sh == bySlot && slot(i) != slot(order[n-1])) {
			p.groups = append(p.groups, multiGroup{})
		}
		g := &p.groups[len(p.groups)-1]
		g.idx = append(g.idx, i)
		g.rks = append(g.rks, p.rks[i])
	}
	for gi := range p.groups {
		g := &p.groups[gi]
		g.acquire = append(slices.Clone(g.rks), make([]string, len(g.rks))...)
		for j, rk := range g.rks {
			g.acquire[len(g.rks)+j] = fenceKey(rk)
		}
	}
	return p, nil
}

// firstDuplicate reports the first key of keys (at i) that an earlier one
// (at j) equals.
func firstDuplicate(keys []string) (j, i int, dup bool) {
	if len(keys) <= 16 { // a map costs more than the comparisons
		for i := 1; i < len(keys); i++ {
			for j := range i {
				if keys[j] == keys[i] {
					return j, i, true
				}
			}
		}
		return 0, 0, false
	}
	seen := make(map[string]int, len(keys))
	for i, k := range keys {
		if j, ok := seen[k]; ok {
			return j, i, true
		}
		seen[k] = i
	}
	return 0, 0, false
}

// multiAttemptFunc makes one attempt at a multi-key lock. On contention
// held is the lock key found held ("" when unknown); the rest is as for an
// attemptFunc.
type multiAttemptFunc func(ctx context.Context) (l *Lock, holderTTL time.Duration, held string, err error)

// errRoomMoved ends a blocked caller's wait in one room: its attempt found
// another key held than the one it waits for.
var errRoomMoved = errors.New("distlock: the key to wait for moved")

// obtainMulti runs obtain's retry and wait loop with attempt. A blocked
// caller waits in the room of the key its last attempt found held (first:
// the first key in the global order); when an attempt finds another key
// held, it moves to that key's room, where obtain subscribes and tries
// again before it waits, so that no release is missed.
func obtainMulti(ctx context.Context, label string, p *multiPlan, o options, w *waiters, attempt multiAttemptFunc) (*Lock, error) {
	room := p.groups[0].rks[0]
	for {
		moved := ""
		try := func(ctx context.Context) (*Lock, time.Duration, error) {
			l, holderTTL, held, err := attempt(ctx)
			if l == nil && err == nil && o.blocking && held != "" && held != room {
				moved = held
				return nil, 0, errRoomMoved
			}
			return l, holderTTL, err
		}
		l, err := obtain(ctx, try, obtainCall{key: label, rk: room, o: o, w: w})
		if moved == "" || !errors.Is(err, errRoomMoved) {
			return l, err
		}
		room = moved
	}
}

// The Locker's multi-key lock.

// multiBackend is the backend of one multi-key Lock obtained from a
// Locker: the Locker's connections, the plan and the fences drawn.
type multiBackend struct {
	lk     *Locker
	p      *multiPlan
	fenced []int64 // per key in the caller's order; nil without fencing
}

func (mb *multiBackend) plan() *multiPlan { return mb.p }
func (mb *multiBackend) fences() []int64  { return mb.fenced }

// multiAttempt makes one attempt with token: it takes the groups in order
// and, when one is held or fails, gives back the groups it took (and the
// failing one when it may have been written) before it returns.
func (lk *Locker) multiAttempt(ctx context.Context, p *multiPlan, token string, o options) (l *Lock, holderTTL time.Duration, held string, err error) {
	start := time.Now()
	var fences []int64
	if o.fencing {
		fences = make([]int64, len(p.keys))
	}
	for gi := range p.groups {
		g := &p.groups[gi]
		got, err := lk.takeGroup(ctx, g, token, o)
		if err != nil || !got.ok {
			taken := gi
			if got.written {
				taken++
			}
			lk.giveBack(ctx, token, p.groups[:taken])
			if err != nil {
				return nil, 0, "", err
			}
			return nil, got.holderTTL, g.rks[got.held], nil
		}
		for j, f := range got.fences {
			if fences != nil {
				fences[g.idx[j]] = f
			}
		}
	}
	mb := &multiBackend{lk: lk, p: p, fenced: fences}
	var fence int64
	if fences != nil {
		fence = fences[0]
	}
	if l = newLock(mb, p.keys[0], p.rks[0], token, fence, o, start); l == nil {
		// Obtained too late to be of use: the validity is already spent.
		lk.giveBack(ctx, token, p.groups)
	}
	return l, 0, "", nil
}

// groupTaken is the outcome of multi_acquire.lua on one group.
type groupTaken struct {
	ok        bool
	fences    []int64       // ok: per key of the group
	held      int           // !ok: the index in the group of the key held by another
	holderTTL time.Duration // !ok: its remaining TTL (see msTTL)
	// written: the group may hold the token although the attempt failed
	// (no answer, or written but not acknowledged by replicas).
	written bool
}

// takeGroup runs multi_acquire.lua on one group (followed by WAIT with
// WithReplicas).
func (lk *Locker) takeGroup(ctx context.Context, g *multiGroup, token string, o options) (groupTaken, error) {
	args := []any{token, o.ttl.Milliseconds(), o.fenceFlag()}
	var (
		res             []int64
		err             error
		acked           int
		waitErr         error
		replicationDone bool
	)
	if o.repl.n > 0 {
		var cmd *redis.Cmd
		cmd, acked, waitErr = lk.replicated(ctx, o.repl, multiAcquireScript, g.acquire, args...)
		if cmd == nil {
			return groupTaken{}, waitErr // the script did not run
		}
		res, err = cmd.Int64Slice()
		replicationDone = true
	} else {
		run := lk.conns.get()
		res, err = multiAcquireScript.Run(ctx, run, g.acquire, args...).Int64Slice()
		lk.conns.done()
	}
	var rerr redis.Error
	switch {
	case err != nil:
		// An error reply means the script wrote nothing; anything else
		// (a timeout, a broken connection) leaves it unknown.
		return groupTaken{written: !errors.As(err, &rerr)}, err
	case len(res) == 1+len(g.rks) && res[0] == 1:
		if replicationDone && (waitErr != nil || acked < o.repl.n) {
			if waitErr != nil {
				return groupTaken{written: true}, waitErr
			}
			return groupTaken{written: true}, &ReplicationError{Acked: acked, Wanted: o.repl.n}
		}
		return groupTaken{ok: true, fences: res[1:]}, nil
	case len(res) == 3 && res[0] == 0 && res[1] >= 1 && res[1] <= int64(len(g.rks)):
		if waitErr != nil {
			return groupTaken{}, waitErr
		}
		return groupTaken{held: int(res[1] - 1), holderTTL: msTTL(res[2])}, nil
	}
	return groupTaken{written: true}, fmt.Errorf("distlock: unexpected acquire reply %v", res)
}

// giveBack releases the keys token holds in groups (publishing their
// wake-ups): the clean-up of a failed attempt, or of a lock found lost. It
// is best effort and bounded by abandonTimeout altogether, whatever the
// state of ctx.
func (lk *Locker) giveBack(ctx context.Context, token string, groups []multiGroup) {
	if len(groups) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	for gi := range groups {
		run := lk.conns.get()
		_ = multiReleaseScript.Run(ctx, run, groups[gi].rks, token, lk.waiters.publish).Err()
		lk.conns.done()
	}
}

// refresh extends every group; when a group finds a key no longer held by
// the token, the lock is lost: that group's script gave back its own keys,
// and the other groups are given back here, unless the refresh was called
// off (Release cancels the auto-refresher's ctx before it releases: the
// keys found gone may be the release's doing, and the release frees the
// rest).
func (mb *multiBackend) refresh(ctx context.Context, l *Lock, ttl time.Duration) error {
	lk := mb.lk
	args := []any{l.token, ttl.Milliseconds(), "1", lk.waiters.publish}
	for gi := range mb.p.groups {
		g := &mb.p.groups[gi]
		var (
			n       int64
			err     error
			acked   int
			waitErr error
		)
		if l.repl.n > 0 {
			cmd, a, werr := lk.replicated(ctx, l.repl, multiRefreshScript, g.rks, args...)
			if cmd == nil {
				return werr
			}
			n, err = cmd.Int64()
			acked, waitErr = a, werr
		} else {
			run := lk.conns.get()
			n, err = multiRefreshScript.Run(ctx, run, g.rks, args...).Int64()
			lk.conns.done()
		}
		switch {
		case err != nil:
			return err
		case n != multiRefreshExtended:
			if ctx.Err() == nil {
				lk.giveBack(ctx, l.token, slices.Delete(slices.Clone(mb.p.groups), gi, gi+1))
			}
			return errGone
		case waitErr != nil:
			return waitErr
		case l.repl.n > 0 && acked < l.repl.n:
			return &ReplicationError{Acked: acked, Wanted: l.repl.n}
		}
	}
	return nil
}

// release releases every group, each in one script that is never re-sent
// (see sendOnce). When a group fails, the others are still released and
// the outcome is unknown.
func (mb *multiBackend) release(ctx context.Context, l *Lock) error {
	lk := mb.lk
	var missing, other int64
	var failed error
	for gi := range mb.p.groups {
		op := nodeOp{script: multiReleaseScript, keys: mb.p.groups[gi].rks, args: []any{l.token, lk.waiters.publish}}
		run := lk.conns.get()
		res, err := sendOnce(ctx, run, &op).Int64Slice()
		lk.conns.done()
		switch {
		case err != nil:
			failed = cmp.Or(failed, err)
			continue
		case len(res) != 4:
			failed = cmp.Or(failed, fmt.Errorf("distlock: unexpected release reply %v", res))
			continue
		}
		missing += res[1]
		other += res[2]
		if res[3] > 0 {
			lk.waiters.lostWakeups.Add(uint64(res[3]))
		}
	}
	if failed != nil {
		// Some keys may be released (by this call's other groups, or by
		// the failed one): a later release that finds them gone while
		// the lock is valid knows why.
		l.releaseUnsure.Store(true)
		return unknownOutcome(failed)
	}
	return l.multiReleaseFound(missing, other)
}

// multiReleaseFound turns what a release found into Release's error: nil
// when every key was deleted; otherwise the lock had been lost (taken
// over when another token held a key), unless an earlier release of
// unknown outcome deleted the keys found gone while the lock was still
// valid (see releaseFound).
func (l *Lock) multiReleaseFound(missing, other int64) error {
	switch {
	case missing == 0 && other == 0:
		return nil
	case l.releaseUnsure.Load() && time.Now().Before(l.ValidUntil()):
		return nil
	case other > 0:
		return errTakenOver
	}
	return errVanished
}

// pttl is the shortest remaining TTL of the keys, when every key still
// carries the token.
func (mb *multiBackend) pttl(ctx context.Context, l *Lock) (time.Duration, error) {
	least := int64(-1)
	for gi := range mb.p.groups {
		run := mb.lk.conns.get()
		ms, err := multiPTTLScript.Run(ctx, run, mb.p.groups[gi].rks, l.token).Int64()
		mb.lk.conns.done()
		switch {
		case err != nil:
			return 0, err
		case ms == pttlNotHeld:
			return 0, errGone
		case ms >= 0 && (least < 0 || ms < least):
			least = ms
		}
	}
	return time.Duration(least) * time.Millisecond, nil
}

// The Redlock's multi-key lock.

// checkOneGroup reports keys that some node of r cannot take in one
// script: a node that is a Redis Cluster (or Ring) on which they fall into
// different slots (shards).
func (r *Redlock) checkOneGroup(p *multiPlan) error {
	for _, nd := range r.nodes {
		sh := shardingOf(nd.client)
		if sh == oneServer {
			continue
		}
		for i := 1; i < len(p.rks); i++ {
			if sh == byShard || keySlot(p.rks[i]) != keySlot(p.rks[0]) {
				return invalidf("keys %q and %q fall into different slots of Redlock node %d, a Redis Cluster or Ring: each node must take all keys in one script", p.keys[0], p.keys[i], nd.idx)
			}
		}
	}
	return nil
}

// redlockMultiBackend is the backend of one multi-key Lock obtained from a
// Redlock: rb holds the nodes, the node timeout and which nodes may hold
// the lock; the plan has one group.
type redlockMultiBackend struct {
	rb     *redlockBackend
	p      *multiPlan
	fenced []int64 // per key in the caller's order; nil without fencing
}

func (b *redlockMultiBackend) plan() *multiPlan { return b.p }
func (b *redlockMultiBackend) fences() []int64  { return b.fenced }

// attempt makes one Redlock attempt at every key. On failure it has
// released the keys on every node that may hold them; held is the key
// found held by the most nodes, qe describes failing nodes and fatal says
// whether Obtain must stop (see redlockBackend.attempt).
func (b *redlockMultiBackend) attempt(ctx context.Context, token string, o options) (l *Lock, holderTTL time.Duration, held string, qe *QuorumError, fatal bool) {
	r := b.rb.r
	g := &b.p.groups[0]
	n := len(g.rks)
	start := time.Now()
	op := nodeOp{script: multiAcquireScript, keys: g.acquire, args: []any{token, o.ttl.Milliseconds(), o.fenceFlag()}}
	nodeFences := make([][]int64, len(r.nodes))
	heldBy := make([]int, n) // per key of the group: nodes that found it held
	var holders []time.Duration
	res := r.fanOut(ctx, b.rb.nodeTimeout, untilQuorum, nil, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		v, err := cmd.Int64Slice()
		switch {
		case err != nil:
			return vFailed, err
		case len(v) == n+1 && v[0] == 1:
			nodeFences[i] = v[1:]
			return vOK, nil
		case len(v) == 3 && v[0] == 0 && v[1] >= 1 && v[1] <= int64(n):
			heldBy[v[1]-1]++
			holders = append(holders, msTTL(v[2]))
			return vRefused, nil
		}
		return vFailed, fmt.Errorf("distlock: unexpected acquire reply %v", v)
	})

	if res.ok >= r.quorum {
		var fences []int64
		raised := true
		if o.fencing {
			var rres fanResult
			fences, rres = b.raiseFences(ctx, token, res.verdicts, nodeFences)
			if rres.ok < r.quorum {
				raised = false
				res.leftBy(rres)
			}
		}
		if raised {
			b.rb.setMayHold(res.verdicts)
			b.fenced = fences
			var fence int64
			if fences != nil {
				fence = fences[0]
			}
			if l = newLock(b, b.p.keys[0], b.p.rks[0], token, fence, o, start); l != nil {
				return l, 0, "", nil, false
			}
		}
	}

	b.abandon(ctx, token, res.verdicts)
	qe, fatal = r.obtainOutcome(res)
	most := -1
	for j, c := range heldBy {
		if c > 0 && (most < 0 || c > heldBy[most]) {
			most = j
		}
	}
	if most >= 0 {
		held = g.rks[most]
	}
	return nil, r.holderTTL(res, holders), held, qe, fatal
}

// raiseFences writes the highest fence drawn for each key by the nodes that
// took the lock back to those nodes, where they still hold every key. It
// returns the fences in the caller's order and the raise's result; they
// may be handed out only with a quorum.
func (b *redlockMultiBackend) raiseFences(ctx context.Context, token string, took []verdict, nodeFences [][]int64) ([]int64, fanResult) {
	g := &b.p.groups[0]
	perKey := make([]int64, len(g.rks)) // in the group's order
	sel := make([]bool, len(took))
	for i, v := range took {
		if v != vOK {
			continue
		}
		sel[i] = true
		for j, f := range nodeFences[i] {
			perKey[j] = max(perKey[j], f)
		}
	}
	args := make([]any, 0, 1+len(perKey))
	args = append(args, token)
	for _, f := range perKey {
		args = append(args, f)
	}
	op := nodeOp{script: multiRaiseFenceScript, keys: g.acquire, args: args}
	res := b.rb.r.fanOut(ctx, b.rb.nodeTimeout, untilQuorum, sel, &op, func(_ int, cmd *redis.Cmd) (verdict, error) {
		switch n, err := cmd.Int64(); {
		case err != nil:
			return vFailed, err
		case n == 1:
			return vOK, nil
		}
		return vFailed, errors.New("distlock: the lock was gone from the node before its fences were raised")
	})
	fences := make([]int64, len(b.p.keys))
	for j, f := range perKey {
		fences[g.idx[j]] = f
	}
	return fences, res
}

// abandon releases every key of a failed attempt on every node that may
// hold them (see redlockBackend.abandon).
func (b *redlockMultiBackend) abandon(ctx context.Context, token string, took []verdict) {
	sel := make([]bool, len(took))
	mine := false
	for i, v := range took {
		sel[i] = v != vRefused
		mine = mine || sel[i]
	}
	if mine {
		b.giveBack(ctx, token, sel)
	}
}

// giveBack releases the keys token holds on the nodes with sel[i] (nil:
// all), publishing their wake-ups. It is best effort, as abandon.
func (b *redlockMultiBackend) giveBack(ctx context.Context, token string, sel []bool) {
	op := nodeOp{script: multiReleaseScript, keys: b.p.groups[0].rks, args: []any{token, b.rb.r.waiters.publish}}
	b.rb.r.fanOut(context.WithoutCancel(ctx), b.rb.nodeTimeout, skipSlow, sel, &op, ignoreAnswer)
}

// refresh extends every key on every node that may hold the lock and needs
// a quorum of nodes holding every key, within the lock's validity. A node
// that lost keys (and where no other token holds one) gets them all back,
// in one script, once a quorum confirmed the hold (see
// redlockBackend.refresh). A lock found lost gives back at once the keys
// it still holds on any node, unless the refresh was called off (see
// multiBackend.refresh).
func (b *redlockMultiBackend) refresh(ctx context.Context, l *Lock, ttl time.Duration) error {
	r := b.rb.r
	g := &b.p.groups[0]
	timeout := min(b.rb.nodeTimeout, ttl/10, time.Until(l.ValidUntil()))
	if timeout <= 0 {
		return errExpired
	}
	gone := make([]bool, len(r.nodes))
	op := nodeOp{script: multiRefreshScript, keys: g.rks, args: []any{l.token, ttl.Milliseconds(), "0", b.rb.r.waiters.publish}}
	res := r.fanOut(ctx, timeout, untilQuorum, b.rb.mayHold, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		switch n, err := cmd.Int64(); {
		case err != nil:
			return vFailed, err
		case n == multiRefreshExtended:
			return vOK, nil
		case n == multiRefreshGone:
			gone[i] = true
		}
		return vRefused, nil
	})
	if err := r.holdOutcome("refresh", res, b.rb.excluded); err != nil {
		if errors.Is(err, ErrNotHeld) && ctx.Err() == nil {
			b.giveBack(ctx, l.token, b.rb.mayHold)
		}
		return err
	}
	if slices.Contains(gone, true) && ctx.Err() == nil {
		heal := nodeOp{script: multiAcquireScript, keys: g.acquire, args: []any{l.token, ttl.Milliseconds(), "0"}}
		r.fanOut(ctx, timeout, waitAll, gone, &heal, ignoreAnswer)
	}
	return nil
}

// release releases every key on every node that may hold the lock (see
// redlockBackend.release); a node counts as released when it deleted
// every key.
func (b *redlockMultiBackend) release(ctx context.Context, l *Lock) error {
	op := nodeOp{script: multiReleaseScript, keys: b.p.groups[0].rks, args: []any{l.token, b.rb.r.waiters.publish}, once: true}
	res := b.rb.r.fanOut(ctx, b.rb.nodeTimeout, untilQuorum, b.rb.mayHold, &op, func(_ int, cmd *redis.Cmd) (verdict, error) {
		v, err := cmd.Int64Slice()
		switch {
		case err != nil:
			return vFailed, err
		case len(v) != 4:
			return vFailed, fmt.Errorf("distlock: unexpected release reply %v", v)
		case l.multiReleaseFound(v[1], v[2]) == nil:
			return vOK, nil
		}
		return vRefused, nil
	})
	err := b.rb.r.holdOutcome("release", res, b.rb.excluded)
	if errors.Is(err, ErrUnknownOutcome) {
		l.releaseUnsure.Store(true)
	}
	return err
}

// pttl returns what a quorum guarantees: the quorum-th largest of the
// nodes' shortest key TTLs (see redlockBackend.pttl).
func (b *redlockMultiBackend) pttl(ctx context.Context, l *Lock) (time.Duration, error) {
	r := b.rb.r
	ttls := make([]int64, len(r.nodes))
	op := nodeOp{script: multiPTTLScript, keys: b.p.groups[0].rks, args: []any{l.token}}
	res := r.fanOut(ctx, b.rb.nodeTimeout, waitAll, b.rb.mayHold, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		ms, err := cmd.Int64()
		switch {
		case err != nil:
			return vFailed, err
		case ms == pttlNotHeld:
			return vRefused, nil
		case ms < 0: // no key expires
			ms = math.MaxInt64
		}
		ttls[i] = ms
		return vOK, nil
	})
	if err := r.holdOutcome("ttl", res, b.rb.excluded); err != nil {
		return 0, err
	}
	return r.quorumTTL(res, ttls), nil
}
