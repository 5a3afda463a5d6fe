package distlock

import (
	"context"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distlock/distlock/internal/redistest"
)

func TestKeySlotKnownValues(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	for key, want := range map[string]uint16{"123456789": 0x31c3 % 16384, "foo": 12182, "{user1000}.following": 3443, "foo{}{bar}": 8363} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// FuzzKeys: for any non-empty key and any prefix, the lock, its fence counter and its
// wake-up channel share one cluster slot, which is the slot of the escaped
// key alone; and distinct (prefix, key) pairs give distinct lock keys.
func FuzzKeys(f *testing.F) {
	for _, s := range [][2]string{
		{"distlock:", "k"}, {"", ""}, {"", "{"}, {"{", "}"}, {"a{b}c", "d}e{f"}, {"%7B", "%"},
		{"distlock:", "\x00\xff{\x01}"}, {"p{}", "{}"}, {"}", "{{}}"}, {"日本", "語{x}"},
	} {
		f.Add(s[0], s[1], s[1]+"x")
	}
	f.Fuzz(func(t *testing.T, prefix, key, other string) {
		if key == "" {
			return // refused by Obtain (ErrInvalidArgument): "{}" is an empty tag
		}
		lk := lockKey(prefix, key)
		slot := keySlot(lk)
		if got := keySlot(fenceKey(lk)); got != slot {
			t.Fatalf("prefix %q key %q: fence key %q slot %d, lock slot %d", prefix, key, fenceKey(lk), got, slot)
		}
		if got := keySlot(wakeChannel(lk)); got != slot {
			t.Fatalf("prefix %q key %q: channel slot %d, lock slot %d", prefix, key, got, slot)
		}
		const id = "0123456789abcdef" // a place in the queue (randomHex(8))
		for _, k := range []string{queueKey(lk), entryKey(lk, id), entryChannel(lk, id)} {
			if got := keySlot(k); got != slot {
				t.Fatalf("prefix %q key %q: queue key or channel %q slot %d, lock slot %d", prefix, key, k, got, slot)
			}
		}
		if want := keySlot("{" + escapeKeyPart(key) + "}"); slot != want {
			t.Fatalf("prefix %q key %q: slot %d, want the key's own %d", prefix, key, slot, want)
		}
		if other != key && lockKey(prefix, other) == lk {
			t.Fatalf("keys %q and %q share the lock key %q", key, other, lk)
		}
	})
}

// fuzzClient talks to the redis-server of the running fuzz target.
var fuzzClient *redis.Client

// fuzzServer is one redis-server for all runs of a fuzz target.
func fuzzServer(f *testing.F) {
	srv := redistest.Start(f)
	fuzzClient = srv.Client(f)
}

// validOptions is the specification of bad input: what Obtain must refuse
// with ErrInvalidArgument.
func validOptions(key string, ttl time.Duration, drift float64) bool {
	if key == "" || ttl <= 0 || math.IsNaN(drift) || math.IsInf(drift, 0) || drift < 0 || drift >= 1 {
		return false
	}
	return ttl > time.Duration(float64(ttl)*drift)+2*time.Millisecond
}

// FuzzObtain: Obtain with any key, TTL, drift factor, token, prefix and
// flags never panics; bad input (and only bad input) matches
// ErrInvalidArgument and never ErrNotObtained; good input obtains, or
// finds the lock held / its validity spent (ErrNotObtained), and never
// fails with a Redis error.
func FuzzObtain(f *testing.F) {
	fuzzServer(f)
	f.Add("k", int64(time.Second), 0.01, "", "distlock:", uint8(0), 0)
	f.Add("", int64(time.Second), 0.01, "", "distlock:", uint8(7), 3)
	f.Add("k", int64(0), 0.01, "", "", uint8(1), 0)
	f.Add("k", int64(-1), 0.01, "", "", uint8(2), 0)
	f.Add("k", int64(2*time.Millisecond), 0.0, "tok", "", uint8(3), 0)
	f.Add("k", int64(2*time.Millisecond+1), 0.0, "tok", "", uint8(3), 1)
	f.Add("k", int64(time.Second), math.NaN(), "", "", uint8(0), 0)
	f.Add("k", int64(time.Second), math.Inf(1), "", "", uint8(0), 0)
	f.Add("k", int64(time.Second), 1.0, "", "", uint8(0), 0)
	f.Add("k", int64(time.Second), -0.5, "", "", uint8(0), 0)
	f.Add("{}\x00\xff", int64(math.MaxInt64), 0.5, "{tok}", "{p}", uint8(15), -5)
	f.Add("k", int64(math.MinInt64), 0.0, "", "", uint8(4), 100)
	f.Fuzz(func(t *testing.T, key string, ttl int64, drift float64, token, prefix string, flags uint8, retries int) {
		opts := []Option{WithTTL(time.Duration(ttl)), WithDriftFactor(drift), WithToken(token), WithKeyPrefix(prefix)}
		if flags&1 != 0 {
			opts = append(opts, WithFencing())
		}
		if flags&2 != 0 {
			opts = append(opts, WithBlocking())
		}
		if flags&4 != 0 {
			opts = append(opts, WithAutoRefresh())
		}
		if flags&8 != 0 {
			opts = append(opts, WithRetry(LimitRetry(LinearBackoff(time.Millisecond), retries%4)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var l *Lock
		var err error
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			l, err = New(fuzzClient).Obtain(ctx, key, opts...)
		}()
		select {
		case <-returned:
		case <-time.After(5 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("Obtain(%q, ttl %v, drift %v, token %q, prefix %q, flags %b) still running 5s after a 50ms ctx:\n%s",
				key, time.Duration(ttl), drift, token, prefix, flags, buf[:runtime.Stack(buf, true)])
		}
		valid := validOptions(key, time.Duration(ttl), drift)
		switch {
		case !valid:
			if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrNotObtained) {
				t.Fatalf("bad input (key %q ttl %v drift %v): %v, want ErrInvalidArgument", key, time.Duration(ttl), drift, err)
			}
		case err == nil:
			rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
			defer rcancel()
			released := make(chan error, 1)
			go func() { released <- l.Release(rctx) }()
			select {
			case rerr := <-released:
				if rerr != nil && !errors.Is(rerr, ErrNotHeld) {
					t.Fatalf("release: %v", rerr)
				}
			case <-time.After(5 * time.Second):
				buf := make([]byte, 1<<20)
				t.Fatalf("Release (ttl %v, drift %v, flags %b) still running 5s after a 1s ctx:\n%s",
					time.Duration(ttl), drift, flags, buf[:runtime.Stack(buf, true)])
			}
		case errors.Is(err, ErrInvalidArgument):
			t.Fatalf("good input (key %q ttl %v drift %v) refused: %v", key, time.Duration(ttl), drift, err)
		case !errors.Is(err, ErrNotObtained):
			t.Fatalf("good input (key %q ttl %v drift %v): %v", key, time.Duration(ttl), drift, err)
		}
	})
}

// TestInvalidOptionCombinations: every kind of bad input, alone and combined
// with other options, fails with ErrInvalidArgument naming the problem,
// without touching Redis and never as ErrNotObtained.
func TestInvalidOptionCombinations(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	extras := [][]Option{
		nil,
		{WithFencing()},
		{WithBlocking()},
		{WithAutoRefresh(), WithFencing(), WithBlocking()},
		{WithToken("t"), WithKeyPrefix("")},
		{WithRetry(ExponentialBackoff(time.Millisecond, time.Second))},
	}
	tests := []struct {
		name string
		key  string
		give []Option
		want string
	}{
		{"empty key", "", nil, "empty key"},
		{"zero TTL", "k", []Option{WithTTL(0)}, "TTL must be positive"},
		{"negative TTL", "k", []Option{WithTTL(-time.Second)}, "TTL must be positive"},
		{"TTL at the drift allowance", "k", []Option{WithTTL(2 * time.Millisecond), WithDriftFactor(0)}, "drift allowance"},
		{"TTL below the drift allowance", "k", []Option{WithTTL(time.Millisecond)}, "drift allowance"},
		{"NaN drift", "k", []Option{WithDriftFactor(math.NaN())}, "drift factor"},
		{"+Inf drift", "k", []Option{WithDriftFactor(math.Inf(1))}, "drift factor"},
		{"negative drift", "k", []Option{WithDriftFactor(-0.1)}, "drift factor"},
		{"drift of 1", "k", []Option{WithDriftFactor(1)}, "drift factor"},
		{"nil retry", "k", []Option{WithRetry(nil)}, "retry strategy"},
		{"zero node timeout", "k", []Option{WithNodeTimeout(0)}, "node timeout"},
		{"empty key and bad TTL", "", []Option{WithTTL(-1)}, "empty key"},
	}
	before := srv.CommandStats(t)
	for _, tt := range tests {
		for _, extra := range extras {
			opts := append(append([]Option{}, extra...), tt.give...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := New(c).Obtain(ctx, tt.key, opts...)
			cancel()
			if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrNotObtained) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s with %v: %v, want ErrInvalidArgument mentioning %q", tt.name, extra, err, tt.want)
			}
			// The same through Do and a Locker-level default.
			err = New(c, opts...).Do(context.Background(), tt.key, func(context.Context) error {
				t.Errorf("%s: fn ran", tt.name)
				return nil
			})
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s with %v via New+Do: %v, want ErrInvalidArgument", tt.name, extra, err)
			}
		}
	}
	// Nil client, and Redlock with no, too few, nil or duplicate nodes.
	// Three nodes for the bad TTL, so that only the TTL is wrong; the two
	// besides srv are never contacted.
	three := []redis.UniversalClient{c}
	for _, addr := range []string{"127.0.0.1:1", "127.0.0.1:2"} {
		u := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = u.Close() })
		three = append(three, u)
	}
	for name, err := range map[string]error{
		"nil client":    errOf(New(nil).Obtain(context.Background(), "k")),
		"no nodes":      errOf(NewRedlock(nil).Obtain(context.Background(), "k")),
		"nil node":      errOf(NewRedlock([]redis.UniversalClient{c, nil}).Obtain(context.Background(), "k")),
		"same node x2":  errOf(NewRedlock([]redis.UniversalClient{c, c}).Obtain(context.Background(), "k")),
		"typed nil":     errOf(New((*redis.Client)(nil)).Obtain(context.Background(), "k")),
		"one node":      errOf(NewRedlock([]redis.UniversalClient{c}).Obtain(context.Background(), "k")),
		"redlock ttl=0": errOf(NewRedlock(three, WithTTL(0)).Obtain(context.Background(), "k")),
	} {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	after := srv.CommandStats(t)
	for _, cmd := range []string{"set", "evalsha", "eval"} {
		if after[cmd] != before[cmd] {
			t.Errorf("bad input reached Redis: %s %d -> %d", cmd, before[cmd], after[cmd])
		}
	}
}

func errOf(_ *Lock, err error) error { return err }
