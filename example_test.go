package distlock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/distlock/distlock"
)

// The examples run against an in-process Redis (miniredis) so that they run
// anywhere; in production pass a client of your Redis.
func exampleClient() (*redis.Client, func()) {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return client, func() { client.Close(); mr.Close() }
}

// Guard a critical section: obtain, do the work, release. A second caller
// gets ErrNotObtained at once.
func Example() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	locker := distlock.New(client)
	lock, err := locker.Obtain(ctx, "pay:user42:order7", distlock.WithTTL(10*time.Second))
	if err != nil {
		fmt.Println("obtain:", err)
		return
	}
	fmt.Println("payment submitted once")

	_, err = locker.Obtain(ctx, "pay:user42:order7")
	if errors.Is(err, distlock.ErrNotObtained) {
		fmt.Println("double click: already in progress")
	}

	if err := lock.Release(ctx); err != nil {
		fmt.Println("release:", err)
	}
	// Output:
	// payment submitted once
	// double click: already in progress
}

// Do runs a job under the lock with auto-refresh; the job's ctx is cancelled
// if the lock is lost, and Do releases the lock when the job returns.
func ExampleLocker_Do() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	locker := distlock.New(client)
	err := locker.Do(ctx, "report:daily", func(ctx context.Context) error {
		fmt.Println("building the report on one replica")
		return nil
	}, distlock.WithTTL(5*time.Second))
	switch {
	case errors.Is(err, distlock.ErrNotObtained):
		fmt.Println("another replica is on it")
	case err != nil:
		fmt.Println("job failed:", err)
	}
	// Output:
	// building the report on one replica
}

// Wait for a lock held by someone else, bounded by the ctx deadline:
// read-modify-write of shared stock without overselling.
func ExampleWithBlocking() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()
	locker := distlock.New(client)
	client.Set(ctx, "stock:sku1", 3, 0)

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lock, err := locker.Obtain(ctx, "stock:sku1", distlock.WithBlocking(), distlock.WithTTL(time.Second))
	if err != nil {
		fmt.Println("obtain:", err) // matches ErrNotObtained and ctx.Err() on timeout
		return
	}
	n, _ := client.Get(ctx, "stock:sku1").Int()
	if n > 0 {
		client.Set(ctx, "stock:sku1", n-1, 0)
	}
	_ = lock.Release(ctx)
	left, _ := client.Get(ctx, "stock:sku1").Int()
	fmt.Println("stock left:", left)
	// Output:
	// stock left: 2
}

// A fencing token lets the guarded resource reject a stale holder: store
// the highest fence seen and refuse writes with a lower one.
func ExampleWithFencing() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()
	locker := distlock.New(client)

	first, _ := locker.Obtain(ctx, "ledger", distlock.WithFencing())
	_ = first.Release(ctx)
	second, _ := locker.Obtain(ctx, "ledger", distlock.WithFencing())
	defer second.Release(ctx)

	fmt.Println(first.Fence() < second.Fence())
	// Output:
	// true
}

// Auto-refresh keeps a lock alive for as long as the work takes; Done closes
// (and Err says why) if the lock is lost.
func ExampleWithAutoRefresh() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()
	locker := distlock.New(client)

	lock, err := locker.Obtain(ctx, "leader", distlock.WithTTL(3*time.Second), distlock.WithAutoRefresh())
	if err != nil {
		fmt.Println("obtain:", err)
		return
	}
	select {
	case <-lock.Done():
		fmt.Println("lost:", lock.Err())
	default:
		fmt.Println("leading")
	}
	_ = lock.Release(ctx)
	<-lock.Done()
	fmt.Println("released, err:", lock.Err())
	// Output:
	// leading
	// released, err: <nil>
}

// A scheduled job that fires on every replica runs once per tick: the
// first replica to claim the tick runs it, and the tick stays taken after
// the run, so a replica whose timer fires a little later does not run it
// again.
func ExampleLocker_OncePerTick() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	runs := 0
	job := func(ctx context.Context, tick time.Time) error {
		runs++
		return nil
	}
	// Three replicas' timers fire for the same tick.
	for replica := 0; replica < 3; replica++ {
		locker := distlock.New(client)
		ran, err := locker.OncePerTick(ctx, "cleanup", time.Minute, job)
		if err != nil {
			fmt.Println("error:", err)
		}
		fmt.Printf("replica %d ran: %v\n", replica, ran)
	}
	fmt.Println("runs:", runs)
	// Output:
	// replica 0 ran: true
	// replica 1 ran: false
	// replica 2 ran: false
	// runs: 1
}

// Lead runs fn while this replica is the leader; fn's ctx is cancelled when
// leadership ends (see Lead for how soon), and Lead campaigns again until
// its own ctx ends. Returning from fn resigns.
func ExampleLocker_Lead() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	locker := distlock.New(client)
	err := locker.Lead(ctx, "scheduler", func(ctx context.Context) error {
		// Whatever the leader writes carries its term's fence, so that the
		// resource can turn away a deposed leader that has not noticed yet.
		fence := distlock.LeaderLock(ctx).Fence()
		fmt.Println("leading, fence", fence)
		return nil // resign
	}, distlock.WithFencing())
	fmt.Println("resigned, err:", err)
	// Output:
	// leading, fence 1
	// resigned, err: <nil>
}

// A Redlock takes the lock on a majority of independent Redis nodes, so the
// loss of a minority of them does not break exclusion.
func ExampleNewRedlock() {
	var clients []redis.UniversalClient
	for i := 0; i < 3; i++ {
		client, stop := exampleClient()
		defer stop()
		clients = append(clients, client)
	}
	ctx := context.Background()

	rl := distlock.NewRedlock(clients)
	lock, err := rl.Obtain(ctx, "invoice:42", distlock.WithTTL(10*time.Second), distlock.WithFencing())
	if err != nil {
		fmt.Println("obtain:", err)
		return
	}
	fmt.Println("held on a quorum, fence", lock.Fence())
	_ = lock.Release(ctx)
	// Output:
	// held on a quorum, fence 1
}
