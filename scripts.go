package distlock

import (
	"context"
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts are embedded from scripts/*.lua and run with EVALSHA,
// falling back to EVAL when the server answers NOSCRIPT (after a restart or
// SCRIPT FLUSH); redis.Script.Run does both. User data reaches them only
// through KEYS and ARGV. What a script calls a holder's token is the value
// stored in the lock key: the token, NUL, "owner:" and the owner label
// (owner.go); only acquire.lua (re-attach) and the status script look
// inside it.
var (
	//go:embed scripts/acquire.lua
	acquireSrc string
	//go:embed scripts/release.lua
	releaseSrc string
	//go:embed scripts/refresh.lua
	refreshSrc string
	//go:embed scripts/pttl.lua
	pttlSrc string
	//go:embed scripts/transfer.lua
	transferSrc string
	//go:embed scripts/refresh_heal.lua
	refreshHealSrc string

	acquireScript  = redis.NewScript(acquireSrc)
	releaseScript  = redis.NewScript(releaseSrc)
	refreshScript  = redis.NewScript(refreshSrc)
	pttlScript     = redis.NewScript(pttlSrc)
	transferScript = redis.NewScript(transferSrc)
	// refreshHealScript is the Redlock's refresh: it also tells a key gone
	// from the node (which the refresh then takes again with SET NX, once a
	// quorum confirmed the hold) from one another token holds.
	refreshHealScript = redis.NewScript(refreshHealSrc)
)

// pttlNotHeld is what pttl.lua answers when the token does not hold the lock.
const pttlNotHeld = -3

// releasedUnannounced is what release.lua answers when it deleted the lock
// but could not publish the wake-up (no permission on the channel).
const releasedUnannounced = 2

// runner is what the library needs from a Redis connection: scripts and raw
// commands. *redis.Client, *redis.ClusterClient, *redis.Ring and
// *redis.AutoPipeliner all are runners.
type runner interface {
	redis.Scripter
	Process(ctx context.Context, cmd redis.Cmder) error
}

var (
	_ runner = (*redis.Client)(nil)
	_ runner = (*redis.ClusterClient)(nil)
	_ runner = (*redis.AutoPipeliner)(nil)
)

// Once's scripts (once.go).
var (
	//go:embed scripts/once_acquire.lua
	onceAcquireSrc string
	//go:embed scripts/once_finish.lua
	onceFinishSrc string

	onceAcquireScript = redis.NewScript(onceAcquireSrc)
	onceFinishScript  = redis.NewScript(onceFinishSrc)
)
