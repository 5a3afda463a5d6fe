package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distlock/distlock"
	"github.com/redis/go-redis/v9"
)

// s1Workers is how many goroutines obtain and release the S1 locks.
const s1Workers = 64

// runS1 holds b.s1Locks auto-refreshed locks (TTL b.s1TTL) on one node for
// b.s1Hold and counts the locks lost, the refresh commands per second and
// the CPU time spent by this process and by Redis.
func (b *bench) runS1(ctx context.Context, srv *server) error {
	b.logf("S1: %d locks with auto-refresh, TTL %v, held for %v", b.s1Locks, b.s1TTL, b.s1Hold)
	var sent atomic.Int64
	client := redis.NewClient(&redis.Options{Addr: srv.addr(), Dialer: countingDialer(&sent)})
	defer client.Close()
	lk := distlock.New(client, distlock.WithTTL(b.s1TTL), distlock.WithAutoRefresh())
	set := b.set("S1")

	keys := make([]string, b.s1Locks)
	for i := range keys {
		keys[i] = fmt.Sprintf("s1:%d", i)
	}
	locks := make([]*distlock.Lock, len(keys))
	if err := parallel(len(keys), func(i int) error {
		l, err := lk.Obtain(ctx, keys[i])
		locks[i] = l
		return err
	}); err != nil {
		b.releaseAll(locks)
		return fmt.Errorf("S1 obtain: %w", err)
	}

	if b.s1Held != nil {
		if err := b.s1Held(ctx); err != nil {
			b.releaseAll(locks)
			return fmt.Errorf("S1 hook: %w", err)
		}
	}
	cpu0, err := processCPU()
	if err != nil {
		b.releaseAll(locks)
		return err
	}
	scpu0, err := serverCPU(ctx, b.admin)
	if err != nil {
		b.releaseAll(locks)
		return err
	}
	sent0 := sent.Load()
	start := time.Now()
	// Watch every lock's Done while holding, so a loss is counted even if the
	// lock recovered in Redis's view later (it cannot, but we do not assume).
	var lostDuring atomic.Int64
	hold, cancelHold := context.WithTimeout(ctx, b.s1Hold)
	var watchers sync.WaitGroup
	for _, l := range locks {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			select {
			case <-l.Done():
				lostDuring.Add(1)
			case <-hold.Done():
			}
		}()
	}
	<-hold.Done()
	cancelHold()
	watchers.Wait()
	elapsed := time.Since(start)
	refreshes := sent.Load() - sent0
	cpu1, err := processCPU()
	if err != nil {
		b.releaseAll(locks)
		return err
	}
	scpu1, err := serverCPU(ctx, b.admin)
	if err != nil {
		b.releaseAll(locks)
		return err
	}
	if ctx.Err() != nil {
		b.releaseAll(locks)
		return ctx.Err()
	}

	// Redis's view: every lock key must still carry its holder's token
	// (and owner label: the stored value is token, NUL "owner:", label).
	var lostInRedis atomic.Int64
	pipe := client.Pipeline()
	cmds := make([]*redis.StringCmd, len(locks))
	for i, l := range locks {
		cmds[i] = pipe.Get(ctx, "distlock:{"+keys[i]+"}")
		_ = l
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		b.releaseAll(locks)
		return fmt.Errorf("S1 check: %w", err)
	}
	for i, l := range locks {
		if v, err := cmds[i].Result(); err != nil || v != l.Token()+"\x00owner:"+l.Owner() {
			lostInRedis.Add(1)
		}
	}
	var lostAtRelease atomic.Int64
	if err := parallel(len(locks), func(i int) error {
		err := locks[i].Release(ctx)
		if errors.Is(err, distlock.ErrNotHeld) {
			lostAtRelease.Add(1)
			return nil
		}
		return err
	}); err != nil {
		return fmt.Errorf("S1 release: %w", err)
	}
	lost := max(lostDuring.Load(), lostInRedis.Load(), lostAtRelease.Load())
	if lost > 0 {
		b.fail("S1: %d of %d auto-refreshed locks lost (Done closed: %d, gone from Redis: %d, Release said not held: %d)",
			lost, len(locks), lostDuring.Load(), lostInRedis.Load(), lostAtRelease.Load())
	}
	set.add(subjOurs, "lost", float64(lost))
	set.add(subjOurs, "refresh", float64(refreshes)/elapsed.Seconds())
	set.add(subjOurs, "cpu", (cpu1 - cpu0).Seconds())
	set.add(subjOurs, "scpu", scpu1-scpu0)
	b.logf("  S1 lost %d  refresh commands %.0f/s  client CPU %.2f s  Redis CPU %.2f s over %v",
		lost, float64(refreshes)/elapsed.Seconds(), (cpu1 - cpu0).Seconds(), scpu1-scpu0, elapsed.Round(time.Millisecond))
	return nil
}

// releaseAll releases whatever locks were obtained, ignoring errors (used on
// the way out of a failed run).
func (b *bench) releaseAll(locks []*distlock.Lock) {
	_ = parallel(len(locks), func(i int) error {
		if locks[i] != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = locks[i].Release(ctx)
		}
		return nil
	})
}

// parallel runs fn(0..n-1) on s1Workers goroutines and returns the errors
// joined.
func parallel(n int, fn func(i int) error) error {
	var (
		next atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for w := 0; w < s1Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
