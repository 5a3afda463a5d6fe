package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/bsm/redislock"
	"github.com/distlock/distlock"
	"github.com/go-redsync/redsync/v4"
	redsyncpool "github.com/go-redsync/redsync/v4/redis"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
)

// lockTTL is the TTL every library gets in the uncontended and contended
// rows: long against any run, so no lock expires while held.
const lockTTL = 10 * time.Second

// A cycleFunc runs one obtain+release cycle on the key it was made for and
// returns how long the obtain took.
type cycleFunc func(ctx context.Context) (obtain time.Duration, err error)

// A cycler makes a cycleFunc per goroutine and key (some libraries keep
// per-lock state, e.g. a redsync Mutex).
type cycler func(key string) cycleFunc

// oursCycler cycles uncontended locks with a distlock Locker.
func oursCycler(lk *distlock.Locker) cycler {
	return func(key string) cycleFunc {
		return func(ctx context.Context) (time.Duration, error) {
			start := time.Now()
			l, err := lk.Obtain(ctx, key)
			d := time.Since(start)
			if err != nil {
				return d, err
			}
			return d, l.Release(ctx)
		}
	}
}

// oursRedlockCycler cycles uncontended locks with a distlock Redlock over
// clients.
func oursRedlockCycler(clients []*redis.Client) cycler {
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
	}
}

// redislockCycler cycles uncontended locks with bsm/redislock.
func redislockCycler(rl *redislock.Client) cycler {
	return func(key string) cycleFunc {
		return func(ctx context.Context) (time.Duration, error) {
			start := time.Now()
			l, err := rl.Obtain(ctx, key, lockTTL, nil)
			d := time.Since(start)
			if err != nil {
				return d, err
			}
			return d, l.Release(ctx)
		}
	}
}

// redsyncPools wraps clients as redsync pools.
func redsyncPools(clients []*redis.Client) []redsyncpool.Pool {
	pools := make([]redsyncpool.Pool, len(clients))
	for i, c := range clients {
		pools[i] = goredis.NewPool(c)
	}
	return pools
}

// redsyncCycler cycles uncontended locks with go-redsync, one try per
// Lock (the lock is free, so a retry would only hide an error).
func redsyncCycler(rs *redsync.Redsync) cycler {
	return func(key string) cycleFunc {
		m := rs.NewMutex(key, redsync.WithExpiry(lockTTL), redsync.WithTries(1))
		return func(ctx context.Context) (time.Duration, error) {
			start := time.Now()
			err := m.LockContext(ctx)
			d := time.Since(start)
			if err != nil {
				return d, err
			}
			ok, err := m.UnlockContext(ctx)
			if err == nil && !ok {
				err = errors.New("redsync: unlock reported not held")
			}
			return d, err
		}
	}
}

// An obtainFunc takes the contended lock (blocking until obtained or ctx is
// done) and returns the function that releases it.
type obtainFunc func(ctx context.Context) (release func(context.Context) error, err error)

// A contender makes an obtainFunc per goroutine for one key.
type contender func(key string) obtainFunc

// oursContender blocks with WithBlocking.
func oursContender(lk *distlock.Locker) contender {
	return func(key string) obtainFunc {
		return func(ctx context.Context) (func(context.Context) error, error) {
			l, err := lk.Obtain(ctx, key, distlock.WithBlocking())
			if err != nil {
				return nil, err
			}
			return l.Release, nil
		}
	}
}

// redislockContender polls with a fixed backoff, as redislock users do.
func redislockContender(rl *redislock.Client, backoff time.Duration) contender {
	opts := &redislock.Options{RetryStrategy: redislock.LinearBackoff(backoff)}
	return func(key string) obtainFunc {
		return func(ctx context.Context) (func(context.Context) error, error) {
			l, err := rl.Obtain(ctx, key, lockTTL, opts)
			if err != nil {
				return nil, err
			}
			return l.Release, nil
		}
	}
}

// redsyncContender uses redsync's default retry delay (random 50–250ms)
// with unlimited tries, so that it waits until ctx is done like the others.
func redsyncContender(rs *redsync.Redsync) contender {
	return func(key string) obtainFunc {
		m := rs.NewMutex(key, redsync.WithExpiry(lockTTL), redsync.WithTries(math.MaxInt32))
		return func(ctx context.Context) (func(context.Context) error, error) {
			if err := m.LockContext(ctx); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error {
				ok, err := m.UnlockContext(ctx)
				if err == nil && !ok {
					err = fmt.Errorf("redsync: unlock reported not held")
				}
				return err
			}, nil
		}
	}
}

// singleNodeCyclers returns the cyclers of U1 and A1 on srv, each on its own
// client: distlock with its defaults, distlock without pipelining, and
// redislock. close closes the clients.
func singleNodeCyclers(srv *server) (cyclers map[string]cycler, close func()) {
	ours, noPipe, peer := newClient(srv), newClient(srv), newClient(srv)
	cyclers = map[string]cycler{
		subjOurs:       oursCycler(distlock.New(ours, distlock.WithTTL(lockTTL))),
		subjOursNoPipe: oursCycler(distlock.New(noPipe, distlock.WithTTL(lockTTL), distlock.WithPipelining(false))),
		subjRedislock:  redislockCycler(redislock.New(peer)),
	}
	return cyclers, func() { ours.Close(); noPipe.Close(); peer.Close() }
}
