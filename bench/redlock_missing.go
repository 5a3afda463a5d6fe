//go:build !distlock_redlock

package main

import "github.com/redis/go-redis/v9"

// redlockMissing is shown in rows R3 and R5 while the library has no Redlock.
const redlockMissing = "n/a (Redlock not built)"

// oursRedlockCycler returns nil: this build of the library has no Redlock.
func oursRedlockCycler([]*redis.Client) (cycler, error) { return nil, nil }
