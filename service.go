package distlock

import (
	"context"
	"time"
)

// A LockService hands out locks on Redis and runs work under them: a
// *Locker over one Redis deployment, or a *Redlock over a quorum of
// independent nodes. Code that takes a LockService works with either (and
// with a fake in its tests); both document their methods in full, and
// every option means the same on both (WithNodeTimeout matters only to a
// Redlock and is ignored by a Locker, so one option list serves both).
type LockService interface {
	// Obtain takes the lock named key (see Locker.Obtain).
	Obtain(ctx context.Context, key string, opts ...Option) (*Lock, error)
	// Do runs fn while holding the lock named key (see Locker.Do).
	Do(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...Option) error
	// Once runs fn at most once per window for key (see Locker.Once).
	Once(ctx context.Context, key string, window time.Duration, fn func(ctx context.Context) error, opts ...Option) error
	// OncePerTick runs fn at most once per tick of a schedule across
	// replicas (see Locker.OncePerTick).
	OncePerTick(ctx context.Context, key string, period time.Duration, fn func(ctx context.Context, tick time.Time) error, opts ...Option) (ran bool, err error)
	// ClaimTick claims the current tick of a schedule (see
	// Locker.ClaimTick).
	ClaimTick(ctx context.Context, key string, period time.Duration, opts ...Option) (*TickClaim, error)
	// Lead runs fn while this replica is the leader named key (see
	// Locker.Lead).
	Lead(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...Option) error
	// Status reports whether the lock named key is held (see
	// Locker.Status and Redlock.Status).
	Status(ctx context.Context, key string, opts ...Option) (LockStatus, error)
}

var (
	_ LockService = (*Locker)(nil)
	_ LockService = (*Redlock)(nil)
)
