package distlock_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// TestOnceReturnsByCtx: a blocked Once (its key held by another holder)
// whose ctx ends mid-call on a slow or a black-holed node returns by its
// ctx plus slack, with an error matching ErrNotObtained and the ctx's
// error, and never runs fn.
func TestOnceReturnsByCtx(t *testing.T) {
	const deadline = time.Second
	for _, fault := range []string{"slow", "black-holed"} {
		t.Run(fault, func(t *testing.T) {
			modes(t, func(t *testing.T, srv *redistest.Server, opts ...distlock.Option) {
				client, p := proxied(t, srv, true)
				waiter := distlock.New(client, opts...)
				h, err := distlock.New(srv.Client(t)).Obtain(context.Background(), "once-ctx", distlock.WithTTL(time.Minute))
				require.NoError(t, err)
				degrade(p, fault, 300*time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				var ran atomic.Bool
				start := time.Now()
				err = waiter.Once(ctx, "once-ctx", time.Minute, func(context.Context) error {
					ran.Store(true)
					return nil
				}, distlock.WithBlocking())
				took := time.Since(start)
				require.Error(t, err)
				assert.ErrorIs(t, err, distlock.ErrNotObtained)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.False(t, ran.Load(), "fn ran while another held the key")
				assert.Less(t, took, deadline+slack)
				t.Logf("returned after %v: %v", took, err)
				p.Stall(false)
				require.NoError(t, h.Release(context.Background()))
			})
		})
	}
}

// TestReplicasObtainReturnsByCtx: an Obtain with WithReplicas whose primary
// is slow or black-holed returns by its ctx (the client applies ctx
// deadlines) plus slack, with an error, and leaves no lock it could not
// confirm handed out.
func TestReplicasObtainReturnsByCtx(t *testing.T) {
	const deadline = 500 * time.Millisecond
	for _, fault := range []string{"slow", "black-holed"} {
		t.Run(fault, func(t *testing.T) {
			rs := redistest.StartReplicated(t, 1)
			client, p := proxied(t, rs.Primary, true)
			lk := distlock.New(client)
			degrade(p, fault, 400*time.Millisecond) // a round trip outlasts the ctx
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			l, err := lk.Obtain(ctx, "repl-ctx", distlock.WithReplicas(1, 100*time.Millisecond))
			took := time.Since(start)
			require.Nil(t, l, "a lock was handed out")
			require.Error(t, err)
			assert.NotErrorIs(t, err, distlock.ErrNotReplicated)
			assert.Less(t, took, deadline+slack)
			t.Logf("returned after %v: %v", took, err)
			p.Stall(false)
		})
	}
}

// TestNewCallsReturnByCtx: the calls added with shared leases, multi-key
// locks, fair waiting and the admin API, blocked (their key held by
// another holder) or waiting on a slow or black-holed node when their ctx
// ends, return by their ctx plus slack with an error, and hand out no lock.
func TestNewCallsReturnByCtx(t *testing.T) {
	const deadline = time.Second
	calls := []struct {
		name string
		call func(ctx context.Context, lk *distlock.Locker) (*distlock.Lock, error)
	}{
		{"ObtainMulti", func(ctx context.Context, lk *distlock.Locker) (*distlock.Lock, error) {
			return lk.ObtainMulti(ctx, []string{"other", "new-ctx"}, distlock.WithBlocking())
		}},
		{"WithShared", func(ctx context.Context, lk *distlock.Locker) (*distlock.Lock, error) {
			return lk.Obtain(ctx, "new-ctx", distlock.WithShared(), distlock.WithBlocking())
		}},
		{"WithLimit", func(ctx context.Context, lk *distlock.Locker) (*distlock.Lock, error) {
			return lk.Obtain(ctx, "new-ctx", distlock.WithLimit(2), distlock.WithBlocking())
		}},
		{"WithFairness", func(ctx context.Context, lk *distlock.Locker) (*distlock.Lock, error) {
			return lk.Obtain(ctx, "new-ctx", distlock.WithFairness(true), distlock.WithBlocking())
		}},
		{"ForceRelease", func(ctx context.Context, lk *distlock.Locker) (*distlock.Lock, error) {
			return nil, lk.ForceRelease(ctx, "new-ctx")
		}},
		{"List", func(ctx context.Context, lk *distlock.Locker) (*distlock.Lock, error) {
			_, err := lk.List(ctx, "*")
			return nil, err
		}},
	}
	for _, tt := range calls {
		for _, fault := range []string{"slow", "black-holed"} {
			t.Run(tt.name+"/"+fault, func(t *testing.T) {
				srv := redistest.Start(t)
				client, p := proxied(t, srv, true)
				lk := distlock.New(client)
				h, err := distlock.New(srv.Client(t)).Obtain(context.Background(), "new-ctx", distlock.WithTTL(time.Minute))
				require.NoError(t, err)
				degrade(p, fault, 300*time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				start := time.Now()
				l, err := tt.call(ctx, lk)
				took := time.Since(start)
				require.Nil(t, l, "a lock was handed out")
				require.Error(t, err)
				assert.Less(t, took, deadline+slack)
				t.Logf("returned after %v: %v", took, err)
				p.Stall(false)
				require.NoError(t, h.Release(context.Background()))
			})
		}
	}
}
