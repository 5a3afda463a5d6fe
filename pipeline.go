package distlock

import (
	"context"
	"fmt"
	"sync"
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
//
// A pipelined command waits for its answer only as long as its ctx lasts
// (see pipelined). A plain one is bounded by ctx only when the client
// applies ctx deadlines (redis.Options.ContextTimeoutEnabled), and
// otherwise by the client's ReadTimeout and WriteTimeout.
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
			c.ap = &pipelined{blocking: ap, client: client}
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

// pipelined is the autopipelined runner of a client. A command whose ctx
// can never end (context.Background) goes through the client's blocking
// autopipeliner, which batches most cheaply and has nothing to honour; one
// whose ctx can end goes through its deferred autopipeliner and waits only
// as long as ctx lasts (ctxPipeliner), made on first use.
type pipelined struct {
	blocking *redis.AutoPipeliner
	client   redis.UniversalClient
	once     sync.Once
	deferred runner // nil until first needed, or when the client has none
}

var _ runner = (*pipelined)(nil)

// pick returns the autopipeliner for a command sent with ctx.
func (p *pipelined) pick(ctx context.Context) runner {
	if ctx.Done() == nil {
		return p.blocking
	}
	p.once.Do(func() {
		if ap, err := p.client.AsyncAutoPipeline(); err == nil {
			p.deferred = ctxPipeliner{ap}
		}
	})
	if p.deferred == nil {
		return p.blocking
	}
	return p.deferred
}

func (p *pipelined) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.pick(ctx).Eval(ctx, script, keys, args...)
}

func (p *pipelined) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.pick(ctx).EvalSha(ctx, sha1, keys, args...)
}

func (p *pipelined) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.pick(ctx).EvalRO(ctx, script, keys, args...)
}

func (p *pipelined) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.pick(ctx).EvalShaRO(ctx, sha1, keys, args...)
}

func (p *pipelined) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	return p.blocking.ScriptExists(ctx, hashes...)
}

func (p *pipelined) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	return p.blocking.ScriptLoad(ctx, script)
}

func (p *pipelined) Process(ctx context.Context, cmd redis.Cmder) error {
	return p.pick(ctx).Process(ctx, cmd)
}

// ctxPipeliner runs commands through a deferred autopipeliner and waits for
// each answer only until the command's ctx ends. The autopipeliner runs
// every command it accepted on its own context, in order, on a connection
// shared with other callers, so a command queued behind a stalled one would
// otherwise wait as long as that one. When ctx ends first the call returns
// ctx's error at once: the command is still sent (or already was) and its
// outcome is unknown, exactly as for a plain command whose reply was lost.
// Nothing waits for it: the autopipeliner completes it on its own.
type ctxPipeliner struct{ ap *redis.AutoPipeliner }

var _ runner = ctxPipeliner{}

// do submits a command made of args and returns it once answered, or a
// copy carrying ctx's error when ctx ended first.
func (p ctxPipeliner) do(ctx context.Context, args ...any) *redis.Cmd {
	return p.submit(ctx, false, args...)
}

// submit is do; with once, go-redis must not re-send the command after a
// network error (see onceCmd).
func (p ctxPipeliner) submit(ctx context.Context, once bool, args ...any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	var sent redis.Cmder = cmd
	if once {
		sent = onceCmd{cmd}
	}
	f := p.ap.Submit(ctx, sent)
	if err := f.WaitContext(ctx); err != nil && ctx.Err() != nil && err == ctx.Err() {
		// The submitted command may still be written to by the
		// autopipeliner: hand the caller another one.
		out := redis.NewCmd(ctx, args...)
		out.SetErr(err)
		return out
	}
	return cmd
}

// evalArgs is the argument list of an EVAL-family command: name, the
// script (or its SHA1), the key count, the keys, then args.
func evalArgs(name, script string, keys []string, args []any) []any {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, script, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	return append(a, args...)
}

func (p ctxPipeliner) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.do(ctx, evalArgs("eval", script, keys, args)...)
}

func (p ctxPipeliner) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.do(ctx, evalArgs("evalsha", sha1, keys, args)...)
}

func (p ctxPipeliner) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.do(ctx, evalArgs("eval_ro", script, keys, args)...)
}

func (p ctxPipeliner) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.do(ctx, evalArgs("evalsha_ro", sha1, keys, args)...)
}

func (p ctxPipeliner) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	return p.ap.ScriptExists(ctx, hashes...)
}

func (p ctxPipeliner) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	return p.ap.ScriptLoad(ctx, script)
}

// Process runs cmd, which must be a *redis.Cmd, an onceCmd or a
// *redis.StatusCmd (the only kinds this library sends), through the
// autopipeliner, bounded by ctx as do is.
func (p ctxPipeliner) Process(ctx context.Context, cmd redis.Cmder) error {
	_, once := cmd.(onceCmd)
	res := p.submit(ctx, once, cmd.Args()...)
	err := res.Err()
	switch c := cmd.(type) {
	case *redis.Cmd:
		c.SetVal(res.Val())
	case onceCmd:
		c.SetVal(res.Val())
	case *redis.StatusCmd:
		if s, ok := res.Val().(string); ok {
			c.SetVal(s)
		}
	default:
		err = fmt.Errorf("distlock: cannot pipeline a %T", cmd)
	}
	cmd.SetErr(err)
	return err
}
