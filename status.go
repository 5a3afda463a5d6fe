package distlock

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// statusSrc reads, in one atomic step, the remaining TTL of a lock key, its
// fence counter, whether it holds a done marker of Once, and how many
// shared leases hold it. KEYS[1] lock key, KEYS[2] fence counter, KEYS[3]
// lease set (same slot); ARGV[1] the prefix of a done marker, ARGV[2] the
// shared marker. Returns {pttl, fence, done, shared}: pttl as PTTL answers
// (-2 no key, -1 no expiry), fence 0 when the counter does not exist, done
// 1 or 0, shared the number of unexpired leases when the key holds the
// shared marker, else 0.
const statusSrc = `
local fence = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local done, shared = 0, 0
local cur = redis.pcall('GET', KEYS[1]) -- an error reply for a non-string key
if type(cur) == 'string' and string.sub(cur, 1, #ARGV[1]) == ARGV[1] then
  done = 1
end
if cur == ARGV[2] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  shared = redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')
end
return {redis.call('PTTL', KEYS[1]), fence, done, shared}
`

var statusScript = newScript(statusSrc)

// LockStatus is what Status reports about one lock key.
type LockStatus struct {
	// Key is the lock's name as given to Status.
	Key string
	// Held tells whether the key is taken now: by a holder, or by Once's
	// done marker (then Done is true too). Obtain and Once find it taken.
	Held bool
	// Done tells whether the key holds Once's done marker: the work was
	// done and Once answers ErrAlreadyDone until TTL has passed.
	Done bool
	// Unknown tells, on a Redlock, that too few nodes answered to tell
	// whether the key is held; Status then also returns a *QuorumError.
	Unknown bool
	// TTL is how long the current hold (or done marker) still lives in
	// Redis unless refreshed: 0 when free, -1 when the key has no expiry
	// (someone removed it by hand). On a Redlock it is how long until
	// enough of the holding nodes' keys expire for a quorum to be free
	// (with every node answering, the quorum-th longest TTL), and for a
	// done marker the longest TTL of the nodes that have it.
	TTL time.Duration
	// Fence is the last fencing token handed out for the key (the next
	// holder with WithFencing gets a higher one), 0 when none ever was. On
	// a Redlock it is the highest of the nodes that answered.
	Fence int64
	// Shared is the number of shared leases (WithShared readers, or
	// WithLimit permits) that hold the key, 0 when it is free or held
	// exclusively. Held is true when it is not 0; TTL is then how long the
	// longest lease still lives. Always 0 on a Redlock.
	Shared int
}

// A LockState summarises a LockStatus; see LockStatus.State.
type LockState int

// The states of a lock key.
const (
	StateFree    LockState = iota // nobody holds the key
	StateHeld                     // a holder has it
	StateDone                     // Once's done marker has it
	StateUnknown                  // too few Redlock nodes answered
)

// String returns "free", "held", "done" or "unknown".
func (s LockState) String() string {
	switch s {
	case StateFree:
		return "free"
	case StateHeld:
		return "held"
	case StateDone:
		return "done"
	case StateUnknown:
		return "unknown"
	}
	return fmt.Sprintf("LockState(%d)", int(s))
}

// State returns the state the status describes: StateUnknown when Unknown,
// else StateDone when Done, else StateHeld when Held, else StateFree.
func (s LockStatus) State() LockState {
	switch {
	case s.Unknown:
		return StateUnknown
	case s.Done:
		return StateDone
	case s.Held:
		return StateHeld
	}
	return StateFree
}

// Status reports, read-only and in one round trip, whether the lock named
// key is held (or, for Once, done), how long the current hold still lives,
// and the last fence handed out. It never reveals the holder's token. Of
// the options only WithKeyPrefix matters; the others are accepted and
// ignored, so that one option list can serve Obtain and Status. Bad input
// returns an error matching ErrInvalidArgument; a Redis error is returned
// wrapped. The answer may be stale by the time it arrives.
func (lk *Locker) Status(ctx context.Context, key string, opts ...Option) (LockStatus, error) {
	st := LockStatus{Key: key}
	if err := lk.check(); err != nil {
		return st, fmt.Errorf("status %q: %w", key, err)
	}
	if key == "" {
		return st, fmt.Errorf("status: %w", invalidf("empty key"))
	}
	o := lk.opts.with(opts)
	rk := lockKey(o.prefix, key)
	run := lk.conns.get()
	defer lk.conns.done()
	res, err := statusScript.Run(ctx, run, []string{rk, fenceKey(rk), sharedKey(rk)}, onceDonePrefix, sharedMarker).Int64Slice()
	if err != nil {
		return st, fmt.Errorf("status %q: %w", key, err)
	}
	if len(res) != 4 {
		return st, fmt.Errorf("status %q: unexpected reply %v", key, res)
	}
	switch pttl := res[0]; {
	case pttl == -2:
	case pttl == -1:
		st.Held, st.TTL = true, -1
	default:
		st.Held, st.TTL = true, time.Duration(pttl)*time.Millisecond
	}
	st.Done = st.Held && res[2] == 1
	st.Fence = res[1]
	st.Shared = int(res[3])
	return st, nil
}

// Status reports what the nodes of the Redlock say about the lock named
// key, read-only, asking every node at once (each for at most the node
// timeout, WithNodeTimeout). The key is:
//   - done when any node that answered holds Once's done marker (Once then
//     answers ErrAlreadyDone);
//   - free when at least a quorum of the nodes answered that nobody holds
//     it (an Obtain could take it);
//   - held when so many nodes answered that it is taken that no quorum is
//     free;
//   - unknown otherwise, when too few nodes answered: Status then returns
//     the status with Unknown set and a *QuorumError (errors.As) with one
//     *NodeError per failing node, matching neither ErrNotObtained nor
//     ErrNotHeld.
//
// Of the options only WithKeyPrefix and WithNodeTimeout matter; the others
// are accepted and ignored. Bad input returns an error matching
// ErrInvalidArgument. The answer may be stale by the time it arrives.
func (r *Redlock) Status(ctx context.Context, key string, opts ...Option) (LockStatus, error) {
	st := LockStatus{Key: key}
	if err := r.check(); err != nil {
		return st, fmt.Errorf("status %q: %w", key, err)
	}
	if key == "" {
		return st, fmt.Errorf("status: %w", invalidf("empty key"))
	}
	o := r.opts.with(opts)
	if o.nodeTimeout <= 0 {
		return st, fmt.Errorf("status %q: %w", key, invalidf("node timeout must be positive, got %v", o.nodeTimeout))
	}
	rk := lockKey(o.prefix, key)
	replies := make([][]int64, len(r.nodes))
	op := nodeOp{script: statusScript, keys: []string{rk, fenceKey(rk), sharedKey(rk)}, args: []any{onceDonePrefix, sharedMarker}}
	res := r.fanOut(ctx, o.nodeTimeout, waitAll, nil, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		v, err := cmd.Int64Slice()
		switch {
		case err != nil:
			return vFailed, err
		case len(v) != 4:
			return vFailed, fmt.Errorf("distlock: unexpected status reply %v", v)
		}
		replies[i] = v
		return vOK, nil
	})
	var free int
	var held, done []int64 // remaining TTLs in ms, math.MaxInt64 for no expiry
	for _, v := range replies {
		if v == nil {
			continue
		}
		st.Fence = max(st.Fence, v[1])
		ms := v[0]
		switch {
		case ms == -2:
			free++
			continue
		case ms < 0:
			ms = noExpiry
		}
		held = append(held, ms)
		if v[2] == 1 {
			done = append(done, ms)
		}
	}
	switch {
	case len(done) > 0:
		st.Held, st.Done = true, true
		st.TTL = msOrNoExpiry(slices.Max(done))
	case free >= r.quorum:
	case len(held) > len(r.nodes)-r.quorum:
		// The hold lives until enough of these keys expire for a quorum
		// to be free.
		slices.Sort(held)
		st.Held = true
		st.TTL = msOrNoExpiry(held[len(held)-(len(r.nodes)-r.quorum)-1])
	default:
		st.Unknown = true
		return st, fmt.Errorf("status %q: %w", key, r.newQuorumError("status", res, nil))
	}
	return st, nil
}

// noExpiry stands for a key without expiry among remaining TTLs in ms.
const noExpiry = int64(1<<63 - 1)

func msOrNoExpiry(ms int64) time.Duration {
	if ms == noExpiry {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}
