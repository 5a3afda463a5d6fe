//go:build distlock_redlock

package main

import (
	"context"
	"time"

	"github.com/distlock/distlock"
	"github.com/redis/go-redis/v9"
)

const redlockMissing = ""

// oursRedlockCycler cycles uncontended locks with a distlock Redlock over
// clients.
func oursRedlockCycler(clients []*redis.Client) (cycler, error) {
	ucs := make([]redis.UniversalClient, len(clients))
	for i, c := range clients {
		ucs[i] = c
	}
	rl := distlock.NewRedlock(ucs, distlock.WithTTL(lockTTL))
	return func(key string) cycleFunc {
		return func(ctx context.Context) (time.Duration, error) {
			start := time.Now()
			l, err := rl.Obtain(ctx, key)
			d := time.Since(start)
			if err != nil {
				return d, err
			}
			return d, l.Release(ctx)
		}
	}, nil
}
