package distlock_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
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

// A scheduled job fires on every replica of a service: run it once per
// tick with OncePerTick. Here four replicas' timers fire one after another
// for the same tick, each after the job already finished on the first one:
// the tick stays taken after the run, so the job runs once. (A lock held
// only while the job runs, as Do's, would let each of them run it again.)
func Example() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	runs := 0
	for replica := 1; replica <= 4; replica++ {
		locker := distlock.New(client) // one per replica (process)
		_, err := locker.OncePerTick(ctx, "report", time.Minute, func(ctx context.Context, tick time.Time) error {
			runs++ // build the report for this tick
			return nil
		})
		if err != nil {
			fmt.Println("error:", err)
		}
	}
	fmt.Println("runs this tick:", runs)
	// Output:
	// runs this tick: 1
}

// Guard a critical section: obtain, do the work, release. A second caller
// gets ErrNotObtained at once while the lock is held. (A lock says "in
// progress", not "done": to run something once, use Once or OncePerTick.)
func Example_obtain() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	locker := distlock.New(client)
	lock, err := locker.Obtain(ctx, "stock:sku1", distlock.WithTTL(10*time.Second))
	if err != nil {
		fmt.Println("obtain:", err)
		return
	}
	fmt.Println("holding the lock")

	_, err = locker.Obtain(ctx, "stock:sku1")
	if errors.Is(err, distlock.ErrNotObtained) {
		fmt.Println("second caller: in progress elsewhere")
	}

	if err := lock.Release(ctx); err != nil {
		fmt.Println("release:", err)
	}
	// Output:
	// holding the lock
	// second caller: in progress elsewhere
}

// A payment submitted twice is charged once: Once remembers that the work
// was done for the window (here a day, counted from the success), so a
// second click after the first one finished gets ErrAlreadyDone; a click
// while the first is running gets ErrNotObtained. If the charge fails, the
// key is freed and the next click tries again.
func ExampleLocker_Once() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()
	locker := distlock.New(client)

	pay := func(click int) {
		err := locker.Once(ctx, "pay:user42:order7", 24*time.Hour, func(ctx context.Context) error {
			fmt.Printf("click %d: charging the card\n", click)
			return nil
		})
		switch {
		case errors.Is(err, distlock.ErrAlreadyDone):
			fmt.Printf("click %d: already paid\n", click)
		case errors.Is(err, distlock.ErrNotObtained):
			fmt.Printf("click %d: payment in progress\n", click)
		case err != nil:
			fmt.Printf("click %d: failed: %v\n", click, err)
		}
	}
	pay(1)
	pay(2) // 0.7s later, or a day minus a second later: same answer
	// Output:
	// click 1: charging the card
	// click 2: already paid
}

// Cache stampede: when a hot entry expires, one request rebuilds it and the
// others wait for the outcome (WithBlocking), woken the moment the rebuild
// ends: after a success they get ErrAlreadyDone and read the fresh entry;
// had it failed, one of them would rebuild instead. The window is the
// entry's lifetime.
func ExampleLocker_Once_cacheStampede() {
	client, stop := exampleClient()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var mu sync.Mutex
	rebuilds := 0
	get := func(locker *distlock.Locker) (string, error) {
		if v, err := client.Get(ctx, "cache:home").Result(); err == nil {
			return v, nil
		}
		err := locker.Once(ctx, "rebuild:cache:home", time.Minute, func(ctx context.Context) error {
			mu.Lock()
			rebuilds++
			mu.Unlock()
			return client.Set(ctx, "cache:home", "<html>", time.Minute).Err()
		}, distlock.WithBlocking())
		if err != nil && !errors.Is(err, distlock.ErrAlreadyDone) {
			return "", err
		}
		return client.Get(ctx, "cache:home").Result()
	}

	var wg sync.WaitGroup
	pages := make([]string, 5)
	for i := range pages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			page, err := get(distlock.New(client))
			if err != nil {
				page = err.Error()
			}
			pages[i] = page
		}()
	}
	wg.Wait()
	fmt.Println("rebuilds:", rebuilds)
	fmt.Println("pages:", pages)
	// Output:
	// rebuilds: 1
	// pages: [<html> <html> <html> <html> <html>]
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

// Move stock between two warehouses without deadlock: ObtainMulti takes
// the locks of both warehouses or of neither, so transfers from Berlin to
// Paris and from Paris to Berlin, running at once and naming the
// warehouses in opposite orders, never each hold one warehouse while
// waiting for the other, and no transfer loses another's update.
func ExampleLocker_ObtainMulti() {
	client, stop := exampleClient()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	locker := distlock.New(client)
	client.Set(ctx, "stock:berlin", 100, 0)
	client.Set(ctx, "stock:paris", 100, 0)

	move := func(ctx context.Context, from, to string, n int) error {
		lock, err := locker.ObtainMulti(ctx, []string{"warehouse:" + from, "warehouse:" + to},
			distlock.WithBlocking(), distlock.WithTTL(10*time.Second))
		if err != nil {
			return err // ctx ended (then it matches ErrNotObtained), Redis is down, or bad input
		}
		defer lock.Release(ctx)
		have, _ := client.Get(ctx, "stock:"+from).Int()
		if have < n {
			return fmt.Errorf("only %d in %s", have, from)
		}
		got, _ := client.Get(ctx, "stock:"+to).Int()
		client.Set(ctx, "stock:"+from, have-n, 0)
		client.Set(ctx, "stock:"+to, got+n, 0)
		return nil
	}

	var wg sync.WaitGroup
	for range 10 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := move(ctx, "berlin", "paris", 1); err != nil {
				fmt.Println("move:", err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := move(ctx, "paris", "berlin", 2); err != nil {
				fmt.Println("move:", err)
			}
		}()
	}
	wg.Wait()
	berlin, _ := client.Get(ctx, "stock:berlin").Int()
	paris, _ := client.Get(ctx, "stock:paris").Int()
	fmt.Println("berlin:", berlin, "paris:", paris)
	// Output:
	// berlin: 110 paris: 90
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

// Code that takes a LockService works with a Locker (one Redis) and a
// Redlock (a quorum of independent nodes) alike.
func ExampleLockService() {
	sendWelcome := func(ctx context.Context, locks distlock.LockService, user string) {
		err := locks.Once(ctx, "welcome:"+user, 30*24*time.Hour, func(ctx context.Context) error {
			fmt.Println("sending the welcome mail to", user)
			return nil
		})
		if errors.Is(err, distlock.ErrAlreadyDone) {
			fmt.Println("already welcomed", user)
		}
	}

	client, stop := exampleClient()
	defer stop()
	var nodes []redis.UniversalClient
	for i := 0; i < 3; i++ {
		node, stop := exampleClient()
		defer stop()
		nodes = append(nodes, node)
	}
	ctx := context.Background()
	for _, locks := range []distlock.LockService{distlock.New(client), distlock.NewRedlock(nodes)} {
		sendWelcome(ctx, locks, "ada")
		sendWelcome(ctx, locks, "ada")
	}
	// Output:
	// sending the welcome mail to ada
	// already welcomed ada
	// sending the welcome mail to ada
	// already welcomed ada
}

// An Observer is told what happens to locks: each attempt that finds the
// key held, each outcome, refresh, loss and release, with the key (never
// the token). Here it prints them; contrib/otel turns them into
// OpenTelemetry metrics and spans, SlogObserver into log records.
func ExampleWithObserver() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	observer := distlock.ObserverFunc(func(e distlock.Event) {
		fmt.Println(e.Kind, e.Key, e.Err)
	})
	locker := distlock.New(client, distlock.WithObserver(observer))

	lock, err := locker.Obtain(ctx, "stock:sku1", distlock.WithTTL(10*time.Second))
	if err != nil {
		fmt.Println("obtain:", err)
		return
	}
	_, _ = locker.Obtain(ctx, "stock:sku1") // held: contended, then not obtained
	_ = lock.Release(ctx)
	// Output:
	// obtained stock:sku1 <nil>
	// contended stock:sku1 <nil>
	// not_obtained stock:sku1 obtain "stock:sku1": distlock: not obtained
	// released stock:sku1 <nil>
}

// SlogObserver logs lock events with log/slog: contention and outcomes at
// Debug, losses, late refreshes and failing refreshes at Warn, failed calls
// at Error. (This example drops the time, wait and held attributes, which
// change from run to run.)
func ExampleSlogObserver() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level:       slog.LevelDebug,
		ReplaceAttr: withoutTimes,
	}))
	locker := distlock.New(client, distlock.WithObserver(distlock.SlogObserver(logger)))

	lock, err := locker.Obtain(ctx, "report", distlock.WithFencing())
	if err != nil {
		fmt.Println("obtain:", err)
		return
	}
	_, _ = locker.Obtain(ctx, "report") // held: contended, then not obtained
	_ = lock.Release(ctx)
	// Output:
	// level=DEBUG msg="distlock obtained" key=report attempts=1 fence=1
	// level=DEBUG msg="distlock contended" key=report attempts=1
	// level=DEBUG msg="distlock not_obtained" key=report attempts=1 err="obtain \"report\": distlock: not obtained"
	// level=DEBUG msg="distlock released" key=report
}

// withoutTimes drops the attributes that change from run to run.
func withoutTimes(_ []string, a slog.Attr) slog.Attr {
	switch a.Key {
	case slog.TimeKey, "wait", "held":
		return slog.Attr{}
	}
	return a
}

// At most three exports run at once across the fleet: each export holds
// one of three permits of "exports" (a counting semaphore) while it runs.
// A permit is a lock of its own: auto-refreshed by Do, and, if its holder
// dies, back by itself when its TTL runs out. Here four exports start on
// four replicas while three are running; the fourth finds every permit
// taken (with WithBlocking it would wait for one instead).
func ExampleWithLimit() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	locker := distlock.New(client)
	var running []*distlock.Lock
	for replica := 1; replica <= 4; replica++ {
		permit, err := locker.Obtain(ctx, "exports", distlock.WithLimit(3), distlock.WithTTL(time.Minute))
		if errors.Is(err, distlock.ErrNotObtained) {
			fmt.Printf("replica %d: three exports are running, try later\n", replica)
			continue
		}
		if err != nil {
			fmt.Println("obtain:", err)
			return
		}
		fmt.Printf("replica %d: export running\n", replica)
		running = append(running, permit)
	}
	st, _ := locker.Status(ctx, "exports")
	fmt.Println("permits held:", st.Shared)

	// Or run the export under a permit with Do, which waits for one.
	_ = running[0].Release(ctx) // one export finished
	err := locker.Do(ctx, "exports", func(ctx context.Context) error {
		fmt.Println("replica 4: export running")
		return nil
	}, distlock.WithLimit(3), distlock.WithBlocking())
	if err != nil {
		fmt.Println("do:", err)
	}
	for _, permit := range running[1:] {
		_ = permit.Release(ctx)
	}
	// Output:
	// replica 1: export running
	// replica 2: export running
	// replica 3: export running
	// replica 4: three exports are running, try later
	// permits held: 3
	// replica 4: export running
}

// Many readers of a configuration, one migration that rewrites it: the
// readers share "config" (WithShared), the migration takes it exclusively
// (a plain Obtain), and waits until the readers present have left; while
// it waits no new reader gets in, so a stream of readers cannot starve it.
func ExampleWithShared() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	locker := distlock.New(client)
	r1, _ := locker.Obtain(ctx, "config", distlock.WithShared())
	r2, err := locker.Obtain(ctx, "config", distlock.WithShared())
	fmt.Println("two readers at once:", err == nil)

	_, err = locker.Obtain(ctx, "config") // the migration, not waiting
	fmt.Println("migration while reading:", errors.Is(err, distlock.ErrNotObtained))

	_ = r1.Release(ctx)
	_ = r2.Release(ctx)
	err = locker.Do(ctx, "config", func(ctx context.Context) error {
		_, err := locker.Obtain(ctx, "config", distlock.WithShared())
		fmt.Println("reader while migrating:", errors.Is(err, distlock.ErrNotObtained))
		return nil // migrate the config here
	}, distlock.WithBlocking())
	fmt.Println("migration done:", err == nil)
	// Output:
	// two readers at once: true
	// migration while reading: true
	// reader while migrating: true
	// migration done: true
}

// An operator's view: List shows who holds which lock (the owner label
// each holder stored, host:pid unless WithOwner says otherwise; never the
// token), and ForceRelease clears a stuck one. Its holder learns at its
// next refresh: Done closes and Err matches ErrForceReleased.
func ExampleLocker_List() {
	client, stop := exampleClient()
	defer stop()
	ctx := context.Background()

	worker := distlock.New(client, distlock.WithOwner("billing-worker-2"))
	stuck, err := worker.Obtain(ctx, "invoice:42", distlock.WithTTL(time.Minute), distlock.WithFencing())
	if err != nil {
		fmt.Println("obtain:", err)
		return
	}

	ops := distlock.New(client)
	locks, err := ops.List(ctx, "invoice:*")
	if err != nil {
		fmt.Println("list:", err)
		return
	}
	for _, l := range locks {
		fmt.Printf("%s %s held by %s, fence %d\n", l.Key, l.Kind, l.Owner, l.Fence)
	}
	if err := ops.ForceRelease(ctx, "invoice:42"); err != nil {
		fmt.Println("force release:", err)
		return
	}
	err = stuck.Refresh(ctx, 0) // the auto-refresher's next round, by hand
	fmt.Println(errors.Is(err, distlock.ErrForceReleased), errors.Is(err, distlock.ErrNotHeld))
	// Output:
	// invoice:42 lock held by billing-worker-2, fence 1
	// true true
}
