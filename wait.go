package distlock

import (
	"context"
	"fmt"
	"time"
)

// attemptFunc makes one attempt to take a lock. It returns the Lock on
// success; otherwise holderTTL is how long the current holder's lock still
// lives (0: already gone, retry at once; < 0: unknown) and err any error
// other than contention.
type attemptFunc func(ctx context.Context) (l *Lock, holderTTL time.Duration, err error)

// Blocking callers without a retry strategy of their own poll with this
// strategy, each wait also capped by the holder's remaining TTL.
var defaultBlockingPoll = ExponentialBackoff(time.Millisecond, 50*time.Millisecond)

// obtain runs attempts until one succeeds, the retry strategy gives up (not
// when blocking) or ctx ends.
func obtain(ctx context.Context, key string, o options, try attemptFunc) (*Lock, error) {
	for n := 1; ; n++ {
		l, holderTTL, err := try(ctx)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, notObtainedByCtx(key, ctxErr)
			}
			return nil, fmt.Errorf("obtain %q: %w", key, err)
		}
		if l != nil {
			return l, nil
		}
		delay, more := o.retry.NextBackoff(n)
		if !more {
			if !o.blocking {
				return nil, fmt.Errorf("obtain %q: %w", key, ErrNotObtained)
			}
			delay, _ = defaultBlockingPoll.NextBackoff(n)
		}
		if holderTTL >= 0 && delay > holderTTL {
			delay = holderTTL
		}
		if err := sleep(ctx, delay); err != nil {
			return nil, notObtainedByCtx(key, err)
		}
	}
}

// sleep waits for d or until ctx is done, whichever comes first, and
// returns ctx's error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
