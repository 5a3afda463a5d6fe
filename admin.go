package distlock

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Operating locks: list the locks held under a prefix, and force-release a
// stuck one. Both are for operators (the CLI's "distlock list" and
// "distlock release --force"), not for the code that takes locks.

//go:embed scripts/force_release.lua
var forceReleaseSrc string

var forceReleaseScript = newScript(wakeSrc + forceReleaseSrc)

// Answers about a force release: refresh.lua and refresh_heal.lua answer
// refreshForced, release.lua releaseForced, when an operator force-released
// the lock from the caller's value.
const (
	refreshForced = 3
	releaseForced = -2
)

// The marker a force release leaves for the holder (force_release.lua)
// lives forcedMarkerMargin longer than the lock would have, or
// forcedMarkerNoExpiry for a lock key without expiry.
const (
	forcedMarkerMargin   = time.Second
	forcedMarkerNoExpiry = time.Minute
)

// scanCount is the COUNT hint of each SCAN that List sends.
const scanCount = 1000

// refreshAnswer turns refresh.lua's answer into Refresh's error.
func refreshAnswer(n int64) error {
	switch n {
	case 1:
		return nil
	case refreshForced:
		return ErrForceReleased
	}
	return errGone
}

// forcedOutcome is the error of a Redlock refresh or release that found
// the lock gone (err matches ErrNotHeld) while forced nodes answered that
// an operator force-released it: then it matches ErrForceReleased too.
func forcedOutcome(err error, forced int) error {
	if forced == 0 || err == nil || !errors.Is(err, ErrNotHeld) {
		return err
	}
	var qe *QuorumError
	if errors.As(err, &qe) {
		qe.match = ErrForceReleased
		return err
	}
	return ErrForceReleased
}

// A LockAdmin lists and force-releases locks, for operators: a *Locker or
// a *Redlock.
type LockAdmin interface {
	// List returns the locks whose names match pattern (see Locker.List).
	List(ctx context.Context, pattern string, opts ...Option) ([]LockInfo, error)
	// ForceRelease deletes the lock named key, whoever holds it (see
	// Locker.ForceRelease).
	ForceRelease(ctx context.Context, key string, opts ...Option) error
}

var (
	_ LockAdmin = (*Locker)(nil)
	_ LockAdmin = (*Redlock)(nil)
)

// A LockKind tells what a listed key holds.
type LockKind int

// The kinds of listed key.
const (
	// KindLock is a lock taken by Obtain, Do, Lead, or by Once while its
	// fn runs.
	KindLock LockKind = iota
	// KindDone is Once's done marker: the work was done, and Once answers
	// ErrAlreadyDone until it expires.
	KindDone
	// KindTick is a tick claimed by ClaimTick or OncePerTick: its name is
	// the job's, '@' and the tick (RFC 3339, UTC).
	KindTick
	// KindShared is held by shared leases (WithShared readers or
	// WithLimit permits); Owner is then empty.
	KindShared
	// KindOther is a key under the prefix, named as a lock is, that holds
	// something other than a string: not written by this library.
	// ForceRelease leaves it alone.
	KindOther
)

// String returns "lock", "done", "tick", "shared" or "other".
func (k LockKind) String() string {
	switch k {
	case KindLock:
		return "lock"
	case KindDone:
		return "done"
	case KindTick:
		return "tick"
	case KindShared:
		return "shared"
	case KindOther:
		return "other"
	}
	return fmt.Sprintf("LockKind(%d)", int(k))
}

// LockInfo is one listed lock.
type LockInfo struct {
	// Key is the lock's name as the caller gave it (without the prefix).
	Key string
	// Kind tells what the key holds.
	Kind LockKind
	// TTL is how long the key still lives unless refreshed, -1 when it has
	// no expiry. On a Redlock, as Status reports it: for a key on more
	// than N−quorum nodes, how long until a quorum of nodes is free of it
	// (for a done marker, the longest); for a key on fewer nodes, which
	// keeps no one from taking the lock, the longest.
	TTL time.Duration
	// Fence is the last fencing token handed out for the key, 0 when none
	// ever was; on a Redlock the highest of the nodes that have the key.
	Fence int64
	// Owner is the owner label stored with the lock (WithOwner), "" when
	// none was; on a Redlock the label most of its nodes have. Never the
	// token.
	Owner string
	// Nodes is, on a Redlock, how many nodes have the key; 1 on a Locker.
	Nodes int
}

// List returns the locks, Once done markers and tick claims whose names
// match pattern, sorted by name, each with its TTL, fence, owner label and
// kind. The pattern is a Redis glob (SCAN MATCH: *, ?, [...], \) over the
// name without the prefix; "" and "*" match every lock under the prefix
// (WithKeyPrefix; the other options are ignored). The library's other keys
// (fence counters, force-release markers) are not listed.
//
// It walks the keyspace with SCAN on the node, on every master of a Redis
// Cluster (or every shard of a Ring), and reads each key it finds (one
// script per key, pipelined), so it costs about one round trip per 1,000
// keys of the keyspace, not only of the prefix: an operator's call, not one
// for a hot path. Like SCAN it may miss a lock taken or list one released
// while it runs, and its answer may be stale by the time it arrives. On a
// Cluster whose masters fail to answer it returns what the others listed
// together with the error; a Redis error is returned wrapped.
func (lk *Locker) List(ctx context.Context, pattern string, opts ...Option) ([]LockInfo, error) {
	if err := lk.check(); err != nil {
		return nil, fmt.Errorf("list %q: %w", pattern, err)
	}
	o := lk.opts.with(opts)
	found := map[string]LockInfo{}
	err := listOn(ctx, lk.conns.client, o.prefix, pattern, func(key string, st statusReply) {
		found[key] = newLockInfo(key, st, 1)
	})
	list := sortedInfos(found)
	if err != nil {
		return list, fmt.Errorf("list %q: %w", pattern, err)
	}
	return list, nil
}

// List returns the locks whose names match pattern on the nodes of the
// Redlock, merged per name, as Locker.List does on one deployment; Nodes
// tells on how many nodes each one is. It asks every node at once, bounded
// by ctx and the clients' own timeouts (not WithNodeTimeout: a SCAN of a
// large keyspace takes longer). When nodes fail it returns what the others
// listed together with an error that wraps one *NodeError per failing node
// (errors.As).
func (r *Redlock) List(ctx context.Context, pattern string, opts ...Option) ([]LockInfo, error) {
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("list %q: %w", pattern, err)
	}
	o := r.opts.with(opts)
	perNode := make([]map[string]statusReply, len(r.nodes))
	errs := make([]error, len(r.nodes))
	var wg sync.WaitGroup
	for i, nd := range r.nodes {
		perNode[i] = map[string]statusReply{}
		wg.Add(1)
		go func() { // owner: this call, which waits for it below
			defer wg.Done()
			errs[i] = listOn(ctx, nd.client, o.prefix, pattern, func(key string, st statusReply) {
				perNode[i][key] = st
			})
		}()
	}
	wg.Wait()

	byKey := map[string][]statusReply{}
	for _, m := range perNode {
		for key, st := range m {
			byKey[key] = append(byKey[key], st)
		}
	}
	found := make(map[string]LockInfo, len(byKey))
	for key, sts := range byKey {
		found[key] = r.mergeInfo(key, sts)
	}
	list := sortedInfos(found)
	var nodeErrs []error
	for i, err := range errs {
		if err != nil {
			nodeErrs = append(nodeErrs, &NodeError{Node: i, Addr: r.nodes[i].addr, Err: err})
		}
	}
	if len(nodeErrs) > 0 {
		return list, fmt.Errorf("list %q: %d of %d nodes failed: %w", pattern, len(nodeErrs), len(r.nodes), joinErrors(nodeErrs...))
	}
	return list, nil
}

// mergeInfo merges what the nodes that have key say about it.
func (r *Redlock) mergeInfo(key string, sts []statusReply) LockInfo {
	info := newLockInfo(key, sts[0], len(sts))
	var ttls, done []int64 // in ms, noExpiry for none
	owners := make([]string, 0, len(sts))
	for _, st := range sts {
		ms := st.pttl
		if ms < 0 {
			ms = noExpiry
		}
		ttls = append(ttls, ms)
		owners = append(owners, st.owner)
		info.Fence = max(info.Fence, st.fence)
		switch st.kind {
		case statusDone:
			done = append(done, ms)
			info.Kind = KindDone
		case statusOther:
			if info.Kind != KindDone {
				info.Kind = KindOther
			}
		}
	}
	info.Owner = mostCommon(owners)
	spare := len(r.nodes) - r.quorum
	switch {
	case len(done) > 0:
		info.TTL = msOrNoExpiry(slices.Max(done))
	case len(ttls) > spare:
		slices.Sort(ttls)
		info.TTL = msOrNoExpiry(ttls[len(ttls)-spare-1])
	default:
		info.TTL = msOrNoExpiry(slices.Max(ttls))
	}
	return info
}

// newLockInfo describes key from one node's status reply.
func newLockInfo(key string, st statusReply, nodes int) LockInfo {
	info := LockInfo{Key: key, Fence: st.fence, Owner: st.owner, Nodes: nodes, TTL: -1}
	if st.pttl >= 0 {
		info.TTL = time.Duration(st.pttl) * time.Millisecond
	}
	switch {
	case st.kind == statusDone:
		info.Kind = KindDone
	case st.kind == statusOther:
		info.Kind = KindOther
	case st.kind == statusShared:
		info.Kind = KindShared
	case isTickKey(key):
		info.Kind = KindTick
	}
	return info
}

// isTickKey reports whether key is named as ClaimTick names a tick's lock
// (tickKey): a name, '@' and a time in RFC 3339 UTC.
func isTickKey(key string) bool {
	i := strings.LastIndexByte(key, '@')
	if i <= 0 {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, key[i+1:])
	return err == nil && t.UTC().Format(time.RFC3339Nano) == key[i+1:]
}

func sortedInfos(found map[string]LockInfo) []LockInfo {
	list := make([]LockInfo, 0, len(found))
	for _, info := range found {
		list = append(list, info)
	}
	slices.SortFunc(list, func(a, b LockInfo) int { return cmp.Compare(a.Key, b.Key) })
	return list
}

// keyUnescaper undoes escapeKeyPart.
var keyUnescaper = strings.NewReplacer("%25", "%", "%7B", "{", "%7D", "}")

// globEscaper makes a string match itself in a Redis glob.
var globEscaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`)

// listOn lists the lock keys under prefix whose names match pattern on
// the deployment of c: the node, every master of a Cluster, every shard of
// a Ring. It calls visit, from one goroutine at a time, once per name
// (SCAN may return a key twice).
func listOn(ctx context.Context, c redis.UniversalClient, prefix, pattern string, visit func(key string, st statusReply)) error {
	var mu sync.Mutex
	seen := map[string]bool{}
	once := func(key string, st statusReply) {
		mu.Lock()
		defer mu.Unlock()
		if !seen[key] {
			seen[key] = true
			visit(key, st)
		}
	}
	scan := func(ctx context.Context, node *redis.Client) error {
		return scanLocks(ctx, node, c, prefix, pattern, once)
	}
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, scan)
	case *redis.Ring:
		return c.ForEachShard(ctx, scan)
	}
	return scanLocks(ctx, c, c, prefix, pattern, once)
}

// scanLocks walks one node's keyspace (node: a single server, one master
// of a Cluster) for the lock keys under prefix whose names match pattern,
// reads each one's status through via (the client that routes its keys:
// the Cluster client for a Cluster's master, else node) and calls visit
// with the name and status of each key that still exists.
func scanLocks(ctx context.Context, node, via redis.UniversalClient, prefix, pattern string, visit func(key string, st statusReply)) error {
	if pattern == "" {
		pattern = "*"
	}
	head := escapeKeyPart(prefix) + "{"
	match := globEscaper.Replace(head) + escapeKeyPart(pattern) + "}"
	var cursor uint64
	for {
		rks, next, err := node.Scan(ctx, cursor, match, scanCount).Result()
		if err != nil {
			return err
		}
		var keys, names []string
		for _, rk := range rks {
			inner, ok := strings.CutPrefix(rk, head)
			inner, ok2 := strings.CutSuffix(inner, "}")
			if !ok || !ok2 || inner == "" || strings.ContainsAny(inner, "{}") {
				continue // not a lock key of this prefix (another key the glob matched)
			}
			keys = append(keys, rk)
			names = append(names, keyUnescaper.Replace(inner))
		}
		sts, err := readStatuses(ctx, via, keys)
		if err != nil {
			return err
		}
		for i, st := range sts {
			if st.pttl != -2 { // else gone since the SCAN
				visit(names[i], st)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// readStatuses runs the status script on each lock key rks[i] through c in
// one pipeline (and, for the keys whose node had not cached the script,
// one more with the script's source).
func readStatuses(ctx context.Context, c redis.UniversalClient, rks []string) ([]statusReply, error) {
	if len(rks) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.Cmd, len(rks))
	pipe := c.Pipeline()
	for i, rk := range rks {
		keys, args := statusCall(rk)
		cmds[i] = statusScript.EvalSha(ctx, pipe, keys, args...)
	}
	_, _ = pipe.Exec(ctx)
	var again []int
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		pipe := c.Pipeline()
		for _, i := range again {
			keys, args := statusCall(rks[i])
			cmds[i] = statusScript.Eval(ctx, pipe, keys, args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	sts := make([]statusReply, len(rks))
	for i, cmd := range cmds {
		st, err := parseStatus(cmd)
		if err != nil {
			return nil, err
		}
		sts[i] = st
	}
	return sts, nil
}

// ForceRelease deletes the lock named key whoever holds it, for an
// operator clearing a stuck lock, and wakes the callers blocked on it (in
// every process) as a release does. The holder is not asked: it learns at
// its next refresh (within TTL/3 with auto-refresh) or Release that the
// lock is gone, with an error matching ErrForceReleased (and ErrNotHeld),
// and its Done closes then; until then it may still act as the holder, so
// force-release only a lock whose holder is dead or stuck, and rely on
// fencing where that matters. A Once done marker is deleted too (Once may
// then run again).
//
// It returns an error matching ErrNotHeld when there is no such key, one
// matching ErrInvalidArgument for an empty key or a key that is not a lock
// (it holds another type: left alone), one matching ErrUnknownOutcome when
// the command was sent but no answer came back, and a wrapped Redis error
// otherwise. Of the options only WithKeyPrefix matters. A release that
// could not be announced (no permission to publish) still succeeds and is
// counted by LostWakeups.
func (lk *Locker) ForceRelease(ctx context.Context, key string, opts ...Option) error {
	if err := lk.check(); err != nil {
		return fmt.Errorf("force release %q: %w", key, err)
	}
	if key == "" {
		return fmt.Errorf("force release: %w", invalidf("empty key"))
	}
	o := lk.opts.with(opts)
	op := forceReleaseOp(lockKey(o.prefix, key), lk.waiters.publish)
	run := lk.conns.get()
	n, err := sendOnce(ctx, run, &op).Int64()
	lk.conns.done()
	if err != nil {
		return fmt.Errorf("force release %q: %w", key, unknownOutcome(err))
	}
	if n == releasedUnannounced {
		lk.waiters.lostWakeups.Add(1)
	}
	if err := forceReleaseAnswer(key, n); err != nil {
		return fmt.Errorf("force release %q: %w", key, err)
	}
	return nil
}

// ForceRelease deletes the lock named key on every node of the Redlock,
// whoever holds it, as Locker.ForceRelease does on one deployment: the
// holder learns at its next refresh (ErrForceReleased), and blocked callers
// are woken. It asks every node at once, each for at most the node timeout
// (WithNodeTimeout), and succeeds when every node answered and at least one
// had the key; when none had it, the error matches ErrNotHeld. When nodes
// failed, the error wraps one *NodeError per failing node (errors.As): the
// key may remain there (call it again), and the lock is free once no
// quorum of nodes has it.
func (r *Redlock) ForceRelease(ctx context.Context, key string, opts ...Option) error {
	if err := r.check(); err != nil {
		return fmt.Errorf("force release %q: %w", key, err)
	}
	if key == "" {
		return fmt.Errorf("force release: %w", invalidf("empty key"))
	}
	o := r.opts.with(opts)
	if o.nodeTimeout <= 0 {
		return fmt.Errorf("force release %q: %w", key, invalidf("node timeout must be positive, got %v", o.nodeTimeout))
	}
	op := forceReleaseOp(lockKey(o.prefix, key), r.waiters.publish)
	res := r.fanOut(ctx, o.nodeTimeout, waitAll, nil, &op, func(_ int, cmd *redis.Cmd) (verdict, error) {
		n, err := cmd.Int64()
		if err != nil {
			return vFailed, err
		}
		switch err := forceReleaseAnswer(key, n); {
		case err == nil:
			return vOK, nil
		case errors.Is(err, ErrNotHeld):
			return vRefused, nil
		default:
			return vFailed, err
		}
	})
	if len(res.errs) > 0 {
		errs := make([]error, len(res.errs))
		for i, ne := range res.errs {
			errs[i] = ne
		}
		return fmt.Errorf("force release %q: deleted on %d of %d nodes, absent from %d, %d failed: %w",
			key, res.ok, len(r.nodes), res.refused, len(res.errs), joinErrors(errs...))
	}
	if res.ok == 0 {
		return fmt.Errorf("force release %q: %w", key, errNoLock)
	}
	return nil
}

// forceReleaseOp is force_release.lua on the lock key rk, publishing the
// wake-up with publish (see wake.lua), never re-sent by
// go-redis (a second run would find nothing to delete).
func forceReleaseOp(rk, publish string) nodeOp {
	return nodeOp{script: forceReleaseScript, keys: []string{rk},
		args: []any{onceDonePrefix, forcedMarkerMargin.Milliseconds(), forcedMarkerNoExpiry.Milliseconds(), publish}, once: true}
}

// forceReleaseAnswer turns force_release.lua's answer into an error.
func forceReleaseAnswer(key string, n int64) error {
	switch n {
	case 1, releasedUnannounced:
		return nil
	case 0:
		return errNoLock
	case -1:
		return invalidf("%q is not a lock: its key holds another type", key)
	}
	return fmt.Errorf("distlock: unexpected force release reply %d", n)
}
