package distlock_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/distlock/distlock"
)

func TestRetryStrategies(t *testing.T) {
	d, ok := distlock.NoRetry().NextBackoff(1)
	assert.False(t, ok)
	assert.Zero(t, d)

	lin := distlock.LinearBackoff(7 * time.Millisecond)
	for n := 1; n < 100; n += 17 {
		d, ok := lin.NextBackoff(n)
		assert.True(t, ok)
		assert.Equal(t, 7*time.Millisecond, d)
	}

	exp := distlock.ExponentialBackoff(2*time.Millisecond, 64*time.Millisecond)
	for n := 1; n <= 200; n++ {
		d, ok := exp.NextBackoff(n)
		assert.True(t, ok)
		want := 64 * time.Millisecond
		if n <= 6 {
			want = 2 * time.Millisecond << (n - 1)
		}
		assert.GreaterOrEqual(t, d, want/2, "retry %d", n)
		assert.LessOrEqual(t, d, want, "retry %d", n)
	}
	// Jitter: 100 draws of the same retry are not all equal.
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		d, _ := exp.NextBackoff(5)
		seen[d] = true
	}
	assert.Greater(t, len(seen), 1, "no jitter")

	lim := distlock.LimitRetry(lin, 3)
	for n := 1; n <= 3; n++ {
		_, ok := lim.NextBackoff(n)
		assert.True(t, ok, "retry %d of 3", n)
	}
	_, ok = lim.NextBackoff(4)
	assert.False(t, ok)
	_, ok = distlock.LimitRetry(nil, 3).NextBackoff(1)
	assert.False(t, ok)
	_, ok = distlock.LimitRetry(lin, 0).NextBackoff(1)
	assert.False(t, ok)
}

func TestRetryStrategiesAreStateless(t *testing.T) {
	// One strategy value shared by many goroutines and calls gives each the
	// same answers: no counter survives a call.
	lim := distlock.LimitRetry(distlock.ExponentialBackoff(time.Millisecond, 4*time.Millisecond), 2)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for call := 0; call < 100; call++ {
				_, ok1 := lim.NextBackoff(1)
				_, ok2 := lim.NextBackoff(2)
				_, ok3 := lim.NextBackoff(3)
				if !ok1 || !ok2 || ok3 {
					t.Errorf("call %d: got %v %v %v, want true true false", call, ok1, ok2, ok3)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestOptionsAreComparableAndPrintable(t *testing.T) {
	assert.Equal(t, distlock.WithTTL(time.Second), distlock.WithTTL(time.Second))
	assert.NotEqual(t, distlock.WithTTL(time.Second), distlock.WithTTL(2*time.Second))
	assert.True(t, distlock.WithBlocking() == distlock.WithBlocking())
	assert.True(t, distlock.WithRetry(distlock.LinearBackoff(time.Millisecond)) == distlock.WithRetry(distlock.LinearBackoff(time.Millisecond)))
	for _, tt := range []struct {
		give distlock.Option
		want string
	}{
		{distlock.WithTTL(3 * time.Second), "WithTTL(3s)"},
		{distlock.WithRetry(distlock.LimitRetry(distlock.ExponentialBackoff(time.Millisecond, time.Second), 5)),
			"WithRetry(LimitRetry(ExponentialBackoff(1ms, 1s), 5))"},
		{distlock.WithBlocking(), "WithBlocking()"},
		{distlock.WithAutoRefresh(), "WithAutoRefresh()"},
		{distlock.WithFencing(), "WithFencing()"},
		{distlock.WithToken("secret"), "WithToken(6 bytes)"},
		{distlock.WithKeyPrefix("app:"), `WithKeyPrefix("app:")`},
		{distlock.WithDriftFactor(0.02), "WithDriftFactor(0.02)"},
		{distlock.WithNodeTimeout(20 * time.Millisecond), "WithNodeTimeout(20ms)"},
		{distlock.WithPipelining(false), "WithPipelining(false)"},
		{distlock.WithOwner("web-3:42"), `WithOwner("web-3:42")`},
	} {
		assert.Equal(t, tt.want, fmt.Sprint(tt.give))
	}
}
