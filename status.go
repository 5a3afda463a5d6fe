package distlock

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// statusSrc reads, in one atomic step, the remaining TTL of a lock key, its
// fence counter, what the key holds, its owner label and how many shared
// leases hold it. KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] lease
// set (same slot); ARGV[1] the prefix of a done marker, ARGV[2] the shared
// marker. Returns {pttl, fence, kind, owner, shared}: pttl as PTTL answers
// (-2 no key, -1 no expiry), fence 0 when the counter does not exist, kind
// 0 for a lock (or no key), 1 for a done marker, 2 for a key that is not a
// string (not the library's), 3 for shared leases, owner the label after
// the value's last NUL "owner:" (owner.go), "" when there is none, shared
// the number of unexpired leases when the key holds the shared marker,
// else 0. The token is never returned.
const statusSrc = `
local fence = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local kind, owner, shared = 0, '', 0
local cur = redis.pcall('GET', KEYS[1]) -- an error reply for a non-string key
if cur == ARGV[2] then
  kind = 3
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  shared = redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')
elseif type(cur) == 'string' then
  local from = 1
  if string.sub(cur, 1, #ARGV[1]) == ARGV[1] then
    kind, from = 1, #ARGV[1] + 1
  end
  for i = #cur, from, -1 do
    if string.byte(cur, i) == 0 then
      if string.sub(cur, i + 1, i + 6) == 'owner:' then
        owner = string.sub(cur, i + 7)
      end
      break
    end
  end
elseif type(cur) == 'table' then
  kind = 2
end
return {redis.call('PTTL', KEYS[1]), fence, kind, owner, shared}
`

// statusCall returns the status script's KEYS and ARGV for the lock key rk.
func statusCall(rk string) (keys []string, args []any) {
	return []string{rk, fenceKey(rk), sharedKey(rk)}, []any{onceDonePrefix, sharedMarker}
}

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
	// Owner is the owner label the holder stored with the lock (WithOwner;
	// default "host:pid"), or of the Once run that left a done marker; ""
	// when free or when the holder stored none. Never the token. On a
	// Redlock it is the label most of the holding nodes have.
	Owner string
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
	keys, args := statusCall(rk)
	res, err := parseStatus(statusScript.Run(ctx, run, keys, args...))
	if err != nil {
		return st, fmt.Errorf("status %q: %w", key, err)
	}
	switch pttl := res.pttl; {
	case pttl == -2:
	case pttl == -1:
		st.Held, st.TTL = true, -1
	default:
		st.Held, st.TTL = true, time.Duration(pttl)*time.Millisecond
	}
	st.Done = st.Held && res.kind == statusDone
	if st.Held {
		st.Owner = res.owner
	}
	st.Fence = res.fence
	st.Shared = int(res.shared)
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
	replies := make([]*statusReply, len(r.nodes))
	op := nodeOp{script: statusScript}
	op.keys, op.args = statusCall(rk)
	res := r.fanOut(ctx, o.nodeTimeout, waitAll, nil, &op, func(i int, cmd *redis.Cmd) (verdict, error) {
		v, err := parseStatus(cmd)
		if err != nil {
			return vFailed, err
		}
		replies[i] = &v
		return vOK, nil
	})
	var free int
	var held, done []int64 // remaining TTLs in ms, math.MaxInt64 for no expiry
	var owners []string    // of the nodes that hold the key
	for _, v := range replies {
		if v == nil {
			continue
		}
		st.Fence = max(st.Fence, v.fence)
		ms := v.pttl
		switch {
		case ms == -2:
			free++
			continue
		case ms < 0:
			ms = noExpiry
		}
		held = append(held, ms)
		owners = append(owners, v.owner)
		if v.kind == statusDone {
			done = append(done, ms)
		}
	}
	switch {
	case len(done) > 0:
		st.Held, st.Done = true, true
		st.TTL = msOrNoExpiry(slices.Max(done))
		st.Owner = mostCommon(owners)
	case free >= r.quorum:
	case len(held) > len(r.nodes)-r.quorum:
		// The hold lives until enough of these keys expire for a quorum
		// to be free.
		slices.Sort(held)
		st.Held = true
		st.TTL = msOrNoExpiry(held[len(held)-(len(r.nodes)-r.quorum)-1])
		st.Owner = mostCommon(owners)
	default:
		st.Unknown = true
		return st, fmt.Errorf("status %q: %w", key, r.newQuorumError("status", res, nil))
	}
	return st, nil
}

// statusReply is a status script's answer (see statusSrc).
type statusReply struct {
	pttl, fence int64
	kind        int64 // statusLock, statusDone, statusOther or statusShared
	owner       string
	shared      int64 // unexpired shared leases
}

// Kinds of key in a statusReply.
const (
	statusLock   = 0 // a lock, or no key
	statusDone   = 1 // Once's done marker
	statusOther  = 2 // not a string: not a key of the library
	statusShared = 3 // shared leases (shared.go)
)

// parseStatus reads a status script's answer.
func parseStatus(cmd *redis.Cmd) (statusReply, error) {
	v, err := cmd.Slice()
	if err != nil {
		return statusReply{}, err
	}
	if len(v) == 5 {
		pttl, ok1 := v[0].(int64)
		fence, ok2 := v[1].(int64)
		kind, ok3 := v[2].(int64)
		owner, ok4 := v[3].(string)
		shared, ok5 := v[4].(int64)
		if ok1 && ok2 && ok3 && ok4 && ok5 {
			return statusReply{pttl: pttl, fence: fence, kind: kind, owner: owner, shared: shared}, nil
		}
	}
	return statusReply{}, fmt.Errorf("distlock: unexpected status reply %v", v)
}

// mostCommon returns the value that occurs most often in vs (the first of
// those that tie), "" when vs is empty.
func mostCommon(vs []string) string {
	best, bestN := "", 0
	for i, v := range vs {
		n := 0
		for _, w := range vs[i:] {
			if w == v {
				n++
			}
		}
		if n > bestN {
			best, bestN = v, n
		}
	}
	return best
}

// noExpiry stands for a key without expiry among remaining TTLs in ms.
const noExpiry = int64(1<<63 - 1)

func msOrNoExpiry(ms int64) time.Duration {
	if ms == noExpiry {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}
