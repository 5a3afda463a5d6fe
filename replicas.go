package distlock

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replica acknowledgement. Redis replicates asynchronously: a lock written
// on a primary that fails over before the write reached a replica is gone
// on the new primary, and so is the fence counter drawn with it. With
// WithReplicas the write of the lock (and of its fence) is followed, in the
// same round trip and on the same connection, by WAIT n timeout, which
// returns how many replicas have acknowledged everything that connection
// wrote. An attempt with fewer acknowledgements gives its lock back and
// fails with a *ReplicationError; a refresh with fewer does not move
// ValidUntil.

// errReplicasRedlock is the error of WithReplicas on a Redlock, as a
// default of NewRedlock or given to a call.
var errReplicasRedlock = invalidf("WithReplicas applies to a Locker: a Redlock's nodes are independent primaries")

// replication is WithReplicas's setting; n 0 turns it off.
type replication struct {
	n       int
	timeout time.Duration
}

// check reports whether r is usable with locks of the given TTL.
func (r replication) check(ttl time.Duration) error {
	switch {
	case r.n == 0 && r.timeout == 0:
		return nil
	case r.n < 1:
		return invalidf("WithReplicas: replica count must be at least 1, got %d", r.n)
	case r.timeout <= 0:
		return invalidf("WithReplicas: timeout must be positive, got %v (WAIT with 0 would block for ever)", r.timeout)
	case r.timeout < time.Millisecond:
		return invalidf("WithReplicas: timeout must be at least 1ms, got %v", r.timeout)
	case r.timeout >= ttl:
		return invalidf("WithReplicas: timeout %v must be below the TTL %v", r.timeout, ttl)
	}
	return nil
}

type replicasOption replication

func (r replicasOption) apply(o *options) { o.repl = replication(r) }
func (r replicasOption) String() string {
	return fmt.Sprintf("WithReplicas(%d, %v)", r.n, r.timeout)
}

// WithReplicas makes a Locker wait, after each write of a lock (Obtain,
// Refresh, auto-refresh), until at least n replicas of the node that holds
// it have acknowledged the write, for at most timeout (Redis WAIT, sent in
// the same round trip as the lock script and on the same connection).
// Default: off (n 0), at no cost.
//
// When fewer acknowledge, Obtain gives the lock back and the attempt fails
// with a *ReplicationError (matching ErrNotReplicated); the retry strategy
// applies to it as to contention, and when no retry is left Obtain returns
// it. A Refresh with fewer acknowledgements returns it and does not move
// ValidUntil, so Done closes when replication cannot keep up (Err then
// wraps the last refresh's ErrNotReplicated). The primary did run such a
// refresh: once the lock is lost, its key stays there until that refresh's
// TTL runs out. Release is not acknowledged: a release lost in a failover leaves a lock nobody holds
// until its TTL. A blocked caller is never handed a lock in-process
// (the hand-over script is not acknowledged); it obtains it itself.
//
// What it buys: after a failover to a replica that acknowledged the lock,
// the lock and its fence counter are there, so nobody else obtains it and
// the next holder draws a fence above every fence handed out before. That
// holds when the promoted replica is one that acknowledged: ask for every
// replica (n = number of replicas), or rely on Sentinel and Cluster
// promoting the most up-to-date replica. WAIT does not make Redis strongly
// consistent: an acknowledged write sits in the replica's memory, not on
// its disk, and a replica restarted without persistence forgets it.
//
// On a Redis Cluster the replicas are those of the key's shard; with
// Sentinel, those of the current primary. It needs a *redis.Client (plain
// or Sentinel failover client) or a *redis.ClusterClient; on a Redlock, and
// with a timeout not below the TTL, n < 1 or timeout ≤ 0, calls fail with
// ErrInvalidArgument, and so do they with a timeout not below the client's
// ReadTimeout (go-redis reads the reply within ReadTimeout).
func WithReplicas(n int, timeout time.Duration) Option {
	return replicasOption{n: n, timeout: timeout}
}

// replicaNode returns the client of the node that holds rk: the script and
// its WAIT must go over one connection of that node.
func replicaNode(ctx context.Context, c redis.UniversalClient, rk string) (*redis.Client, error) {
	switch c := c.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, rk)
	}
	return nil, invalidf("WithReplicas needs a *redis.Client or *redis.ClusterClient, got %T", c)
}

// replicated runs script on the node that holds keys[0], followed in the
// same pipeline (one connection, one round trip) by WAIT r.n r.timeout. It
// returns the script's reply and how many replicas acknowledged. When WAIT
// failed (e.g. NOPERM) it returns the error together with the script's
// reply, as the script did run.
func (lk *Locker) replicated(ctx context.Context, r replication, script *script, keys []string, args ...any) (*redis.Cmd, int, error) {
	node, err := replicaNode(ctx, lk.conns.client, keys[0])
	if err != nil {
		return nil, 0, err
	}
	if rt := node.Options().ReadTimeout; rt > 0 && r.timeout >= rt {
		// go-redis reads a pipeline's replies within ReadTimeout.
		return nil, 0, invalidf("WithReplicas timeout %v is not below the client's ReadTimeout %v", r.timeout, rt)
	}
	for loaded := false; ; loaded = true {
		pipe := node.Pipeline()
		res := script.EvalSha(ctx, pipe, keys, args...)
		wait := pipe.Do(ctx, "wait", r.n, r.timeout.Milliseconds())
		_, _ = pipe.Exec(ctx)
		if err := res.Err(); err != nil {
			if !loaded && redis.HasErrorPrefix(err, "NOSCRIPT") {
				// Not run: load it (after a restart or SCRIPT FLUSH) and
				// send both again.
				if err := script.Load(ctx, node).Err(); err != nil {
					return nil, 0, err
				}
				continue
			}
			return nil, 0, err
		}
		acked, err := wait.Int64()
		if err != nil {
			// The script ran: the caller still has its reply to act on.
			return res, 0, fmt.Errorf("wait for replicas: %w", err)
		}
		return res, int(acked), nil
	}
}

// acquireReplicated is acquire with WithReplicas: always the script, then
// WAIT. A lock fewer replicas acknowledged is given back (unless it is a
// caller's token re-attaching, which may be a live Lock's).
func (lk *Locker) acquireReplicated(ctx context.Context, rk, token string, o options) (ok bool, fence int64, holderTTL time.Duration, readers bool, err error) {
	keys, args := acquireCall(rk, token, o)
	cmd, acked, waitErr := lk.replicated(ctx, o.repl, acquireScript, keys, args...)
	if cmd == nil {
		return false, 0, 0, false, waitErr // the script did not run
	}
	res, err := cmd.Int64Slice()
	if err != nil {
		return false, 0, 0, false, err
	}
	if len(res) != 2 {
		return false, 0, 0, false, fmt.Errorf("distlock: unexpected acquire reply %v", res)
	}
	if res[0] != acquireTaken {
		if waitErr != nil {
			return false, 0, 0, false, waitErr
		}
		return false, 0, msTTL(res[1]), res[0] == acquireReaders, nil
	}
	if waitErr != nil || acked < o.repl.n {
		// The lock was written but not acknowledged: give it back (an
		// error reply from WAIT says nothing about the script's write).
		if o.token == "" {
			lk.abandon(ctx, nil, rk, token)
		}
		if waitErr != nil {
			return false, 0, 0, false, waitErr
		}
		return false, 0, 0, false, &ReplicationError{Acked: acked, Wanted: o.repl.n}
	}
	return true, res[1], 0, false, nil
}

// refreshReplicated is refresh with WithReplicas.
func (lk *Locker) refreshReplicated(ctx context.Context, l *Lock, ttl time.Duration) error {
	cmd, acked, waitErr := lk.replicated(ctx, l.repl, refreshScript, []string{l.rkey}, l.token, ttl.Milliseconds())
	if cmd == nil {
		return waitErr
	}
	n, err := cmd.Int64()
	switch {
	case err != nil:
		return err
	case n != 1:
		return refreshAnswer(n)
	case waitErr != nil:
		return waitErr
	case acked < l.repl.n:
		return &ReplicationError{Acked: acked, Wanted: l.repl.n}
	}
	return nil
}
