package distlock

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// statusScript reads, in one atomic step, the remaining TTL of a lock key
// and its fence counter. KEYS[1] lock key, KEYS[2] fence counter (same
// slot). Returns {pttl, fence}: pttl as PTTL answers (-2 no key, -1 no
// expiry), fence 0 when the counter does not exist.
var statusScript = redis.NewScript(`
local fence = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
return {redis.call('PTTL', KEYS[1]), fence}
`)

// LockStatus is what Status reports about one lock key.
type LockStatus struct {
	// Key is the lock's name as given to Status.
	Key string
	// Held tells whether someone holds the lock now.
	Held bool
	// TTL is how long the current hold still lives in Redis unless
	// refreshed: 0 when free, -1 when the key has no expiry (someone
	// removed it by hand).
	TTL time.Duration
	// Fence is the last fencing token handed out for the key (the next
	// holder with WithFencing gets a higher one), 0 when none ever was.
	Fence int64
}

// Status reports, read-only and in one round trip, whether the lock named
// key is held, how long the current hold still lives, and the last fence
// handed out. It never reveals the holder's token. Of the options only
// WithKeyPrefix matters. Bad input returns an error matching
// ErrInvalidArgument; a Redis error is returned wrapped. The answer may be
// stale by the time it arrives.
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
	res, err := statusScript.Run(ctx, run, []string{rk, fenceKey(rk)}).Int64Slice()
	if err != nil {
		return st, fmt.Errorf("status %q: %w", key, err)
	}
	if len(res) != 2 {
		return st, fmt.Errorf("status %q: unexpected reply %v", key, res)
	}
	switch pttl := res[0]; {
	case pttl == -2:
	case pttl == -1:
		st.Held, st.TTL = true, -1
	default:
		st.Held, st.TTL = true, time.Duration(pttl)*time.Millisecond
	}
	st.Fence = res[1]
	return st, nil
}
