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
	//go:embed scripts/wake.lua
	wakeSrc string
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

	//go:embed scripts/raise_fence.lua
	raiseFenceSrc string
	//go:embed scripts/acquire_queued.lua
	acquireQueuedSrc string

	acquireScript  = newScript(acquireSrc)
	releaseScript  = newScript(wakeSrc + releaseSrc)
	refreshScript  = newScript(refreshSrc)
	pttlScript     = newScript(pttlSrc)
	transferScript = newScript(transferSrc)
	// refreshHealScript is the Redlock's refresh: it also tells a key gone
	// from the node (which the refresh then takes again with SET NX, once a
	// quorum confirmed the hold) from one another token holds.
	refreshHealScript = newScript(refreshHealSrc)
	raiseFenceScript  = newScript(raiseFenceSrc)
	// acquireQueuedScript is the attempt of a caller that waits its turn
	// (fair.go).
	acquireQueuedScript = newScript(wakeSrc + acquireQueuedSrc)
)

// A script is one of the library's Lua scripts. Its Run (redis.Script's)
// sends EVALSHA and falls back to EVAL on NOSCRIPT; a Redlock fan-out
// (nodeOp) sends the source itself to a node that may not have the script
// cached, which it tracks per node with bit id of rlNode.eval. A new script
// is a file in scripts/ and one newScript line: nothing else keeps a list.
type script struct {
	*redis.Script
	src string
	id  uint8
}

// scripts holds every script made by newScript, by id.
var scripts []*script

func newScript(src string) *script {
	s := &script{Script: redis.NewScript(src), src: src, id: uint8(len(scripts))}
	scripts = append(scripts, s)
	return s
}

// allScripts is the rlNode.eval mask with a bit for every script.
func allScripts() uint32 { return 1<<len(scripts) - 1 }

// acquireCall returns acquire.lua's KEYS and ARGV for an attempt with token
// under o: the lock key and its fence counter; the token, the TTL in ms,
// "1" to draw a fence (WithFencing) or "0", and the shared marker.
func acquireCall(rk, token string, o options) (keys []string, args []any) {
	return []string{rk, fenceKey(rk)}, []any{token, o.ttl.Milliseconds(), o.fenceFlag(), sharedMarker}
}

// Answers of acquire.lua (the first element of its reply).
const (
	acquireHeld    = 0 // held by another token
	acquireTaken   = 1 // obtained
	acquireReaders = 2 // held by shared leases
)

// pttlNotHeld is what pttl.lua answers when the token does not hold the lock.
const pttlNotHeld = -3

// releasedUnannounced is what release.lua answers when it deleted the lock
// but could not publish the wake-up (no permission on the channel).
const releasedUnannounced = 2

// releasedHandedOver is what release.lua answers when it handed the lock
// to the first live waiter queued for it (fair.go).
const releasedHandedOver = 3

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

	onceAcquireScript = newScript(onceAcquireSrc)
	onceFinishScript  = newScript(onceFinishSrc)
)

// Shared leases' scripts (shared.go).
var (
	//go:embed scripts/shared_acquire.lua
	sharedAcquireSrc string
	//go:embed scripts/shared_refresh.lua
	sharedRefreshSrc string
	//go:embed scripts/shared_release.lua
	sharedReleaseSrc string
	//go:embed scripts/shared_pttl.lua
	sharedPTTLSrc string
	//go:embed scripts/writer_wait.lua
	writerWaitSrc string
	//go:embed scripts/writer_done.lua
	writerDoneSrc string

	sharedAcquireScript = newScript(sharedAcquireSrc)
	sharedRefreshScript = newScript(sharedRefreshSrc)
	sharedReleaseScript = newScript(wakeSrc + sharedReleaseSrc)
	sharedPTTLScript    = newScript(sharedPTTLSrc)
	writerWaitScript    = newScript(writerWaitSrc)
	writerDoneScript    = newScript(wakeSrc + writerDoneSrc)
)
