package distlock

import (
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// conns chooses, per command, between the plain client and its
// autopipeliner. A lone command goes straight through the plain client (one
// round trip, no hand-over to the pipeliner's flusher goroutine); a command
// sent while another one of this owner is in flight joins the
// autopipeliner, which batches concurrent commands into shared round trips.
// So a single caller keeps the plain client's latency and allocations,
// while concurrent callers get pipelining.
type conns struct {
	client   redis.UniversalClient
	plain    runner
	ap       runner // nil without pipelining
	inflight atomic.Int32
}

// newConns returns the conns of client; with pipelining it asks client for
// its autopipeliner and falls back to plain calls when there is none (a
// redis.Ring).
func newConns(client redis.UniversalClient, pipelining bool) *conns {
	c := &conns{client: client, plain: client}
	if pipelining {
		if ap, err := client.AutoPipeline(); err == nil {
			c.ap = ap
		}
	}
	return c
}

// get returns the runner for one command; done must follow when the command
// has returned.
func (c *conns) get() runner {
	if c.ap == nil || c.inflight.Add(1) == 1 {
		return c.plain
	}
	return c.ap
}

// done ends a command started with get.
func (c *conns) done() {
	if c.ap != nil {
		c.inflight.Add(-1)
	}
}
