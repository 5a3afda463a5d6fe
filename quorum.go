package distlock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// rlNode is one independent Redis node of a Redlock.
type rlNode struct {
	idx    int
	client redis.UniversalClient
	// ap is the client's deferred (async) autopipeliner when pipelining is
	// on: commands are submitted without a goroutine and awaited with a
	// deadline. nil: plain calls, one goroutine per node per fan-out.
	ap   *redis.AutoPipeliner
	addr string
	// slow is set when the node's last awaited answer timed out. Once a
	// quorum is decided, the fan-out does not wait for slow nodes (their
	// commands still go out), so a paused node costs the node timeout once,
	// not on every call. Any answer clears it.
	slow atomic.Bool
	// eval has bit 1<<scriptID set for each script the node may not have
	// cached: that script is sent with EVAL, not EVALSHA, so that no
	// NOSCRIPT fallback adds a round trip after the others have answered.
	// All bits start set; a successful EVAL clears its bit; NOSCRIPT sets
	// it; a timeout or connection error sets all (the node may restart).
	eval atomic.Uint32
}

func (nd *rlNode) needsEval(id uint8) bool { return nd.eval.Load()&(1<<id) != 0 }

func (nd *rlNode) setEval(mask uint32) {
	for {
		old := nd.eval.Load()
		if old&mask == mask || nd.eval.CompareAndSwap(old, old|mask) {
			return
		}
	}
}

func (nd *rlNode) clearEval(id uint8) {
	for {
		old := nd.eval.Load()
		if old&(1<<id) == 0 || nd.eval.CompareAndSwap(old, old&^(1<<id)) {
			return
		}
	}
}

// nodeOp is the command a fan-out sends to every node: a script, run as
// EVALSHA with an EVAL fallback on NOSCRIPT, or a raw command.
type nodeOp struct {
	script *script
	keys   []string
	args   []any
	raw    []any
	once   bool // never re-sent by go-redis after a network error (see sendOnce)
}

// wrap returns cmd as the Cmder to send.
func (op *nodeOp) wrap(cmd *redis.Cmd) redis.Cmder {
	if op.once {
		return onceCmd{cmd}
	}
	return cmd
}

func (op *nodeOp) cmd(ctx context.Context, eval bool) *redis.Cmd {
	if op.raw != nil {
		return redis.NewCmd(ctx, op.raw...)
	}
	if eval {
		return redis.NewCmd(ctx, evalArgs("eval", op.script.src, op.keys, op.args)...)
	}
	return redis.NewCmd(ctx, evalArgs("evalsha", op.script.Hash(), op.keys, op.args)...)
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// verdict is what one node's answer means to the operation.
type verdict uint8

const (
	vNone    verdict = iota // not asked, or asked but not awaited
	vOK                     // the node did what was asked
	vRefused                // held by another (acquire) / not held (the rest)
	vFailed                 // no usable answer: see the NodeError
)

// fanMode says how long a fan-out waits.
type fanMode uint8

const (
	// untilQuorum waits for every node not marked slow, and for the slow
	// ones only while fewer than a quorum succeeded.
	untilQuorum fanMode = iota
	// waitAll waits for every node up to the deadline.
	waitAll
	// skipSlow never waits for nodes marked slow (best-effort clean-up).
	skipSlow
)

// fanResult is the outcome of one fan-out.
type fanResult struct {
	verdicts []verdict
	errs     []*NodeError // in node order
	ok       int
	refused  int
}

// classifyFunc interprets an answer of node i (cmd.Err() is nil or
// redis.Nil) and returns vOK, vRefused, or vFailed with the reason.
type classifyFunc func(i int, cmd *redis.Cmd) (verdict, error)

// nodeCall is one node's part of a fan-out.
type nodeCall struct {
	asked bool
	cmd   *redis.Cmd
	fut   redis.AutoFuture // pipelined
	eval  bool             // the EVAL fallback was sent
	done  chan struct{}    // plain: closed when the goroutine has set cmd
}

// cancelledCtx turns AutoFuture.WaitContext into a non-blocking poll.
var cancelledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// fanOut sends op to every node (or to the nodes with sel[i], when sel is
// not nil) at once and waits for the answers as mode says, each node for at
// most timeout. It returns once every plain-call goroutine it started has
// ended.
func (r *Redlock) fanOut(ctx context.Context, timeout time.Duration, mode fanMode, sel []bool, op *nodeOp, classify classifyFunc) fanResult {
	n := len(r.nodes)
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f := &fan{r: r, ctx: ctx, dctx: dctx, timeout: timeout, op: op, classify: classify,
		calls: make([]nodeCall, n), res: fanResult{verdicts: make([]verdict, n)}}
	calls := f.calls
	for i, nd := range r.nodes {
		if sel != nil && !sel[i] {
			continue
		}
		c := &calls[i]
		c.asked = true
		c.eval = op.script != nil && nd.needsEval(op.script.id)
		if nd.ap != nil {
			c.cmd = op.cmd(ctx, c.eval)
			c.fut = nd.ap.Submit(ctx, op.wrap(c.cmd))
			continue
		}
		c.done = make(chan struct{})
		go runPlain(dctx, nd.client, op, c) // owner: this fan-out, which waits for c.done below
	}

	isSlow := func(i int) bool { return r.nodes[i].ap != nil && r.nodes[i].slow.Load() }
	pending := make([]bool, n)
	for i := range calls {
		if !calls[i].asked {
			continue
		}
		if isSlow(i) {
			pending[i] = true
			continue
		}
		f.settle(i, dctx)
	}
	// Slow nodes that have answered meanwhile count, and are slow no more.
	for i := range calls {
		if pending[i] && f.settle(i, cancelledCtx) {
			pending[i] = false
		}
	}
	if mode != skipSlow && (mode != untilQuorum || f.res.ok < r.quorum) {
		for i := range calls {
			if pending[i] {
				f.settle(i, dctx)
			}
		}
	}
	slices.SortFunc(f.res.errs, func(a, b *NodeError) int { return cmp.Compare(a.Node, b.Node) })
	return f.res
}

// fan is one fan-out in progress (see fanOut).
type fan struct {
	r        *Redlock
	ctx      context.Context // the caller's
	dctx     context.Context // ctx bounded by the node timeout
	timeout  time.Duration
	op       *nodeOp
	classify classifyFunc
	calls    []nodeCall
	res      fanResult
}

// settle records node i's answer, waiting on w; it returns false when the
// answer is not there (w ended first).
func (f *fan) settle(i int, w context.Context) bool {
	c, nd := &f.calls[i], f.r.nodes[i]
	var err error
	if c.done != nil {
		<-c.done
		err = c.cmd.Err()
		if err != nil && f.dctx.Err() != nil && f.ctx.Err() == nil && isTimeout(err) {
			nd.setEval(allScripts())
			f.res.fail(i, nd, nd.timeoutErr(f.timeout, err))
			return true
		}
	} else {
		for {
			err = c.fut.WaitContext(w)
			if w != cancelledCtx && w.Err() != nil && err == w.Err() {
				// When the answer and the deadline were both there by
				// the time this goroutine ran, WaitContext picks one
				// at random: look again, answer first.
				err = c.fut.WaitContext(cancelledCtx)
			}
			if w.Err() != nil && (err == w.Err() || err == cancelledCtx.Err()) {
				if w == cancelledCtx {
					return false // still in flight
				}
				if f.ctx.Err() != nil {
					f.res.fail(i, nd, f.ctx.Err())
				} else {
					nd.slow.Store(true)
					nd.setEval(allScripts())
					f.res.fail(i, nd, nd.timeoutErr(f.timeout, nil))
				}
				return true
			}
			if !c.eval && f.op.script != nil && isNoScript(err) {
				// The node lost its scripts (restart, SCRIPT FLUSH).
				nd.setEval(1 << f.op.script.id)
				c.eval = true
				c.cmd = f.op.cmd(f.ctx, true)
				c.fut = nd.ap.Submit(f.ctx, f.op.wrap(c.cmd))
				continue
			}
			break
		}
		nd.slow.Store(false)
	}
	var rerr redis.Error
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		if c.eval {
			nd.clearEval(f.op.script.id)
		}
	case errors.As(err, &rerr):
		f.res.fail(i, nd, err) // an error reply: the node is up
		return true
	default:
		nd.setEval(allScripts())
		f.res.fail(i, nd, err)
		return true
	}
	v, cerr := f.classify(i, c.cmd)
	switch v {
	case vOK:
		f.res.ok++
	case vRefused:
		f.res.refused++
	default:
		f.res.fail(i, nd, cerr)
		return true
	}
	f.res.verdicts[i] = v
	return true
}

// leftBy counts an attempt as what a follow-up fan-out on its nodes (the
// fence raise) left of it: that fan-out's successes, and the errors of
// both, in node order.
func (res *fanResult) leftBy(next fanResult) {
	res.ok = next.ok
	res.errs = append(res.errs, next.errs...)
	slices.SortFunc(res.errs, func(a, b *NodeError) int { return cmp.Compare(a.Node, b.Node) })
}

func (res *fanResult) fail(i int, nd *rlNode, err error) {
	if err == nil {
		err = errors.New("distlock: no answer")
	}
	res.verdicts[i] = vFailed
	res.errs = append(res.errs, &NodeError{Node: nd.idx, Addr: nd.addr, Err: err})
}

// runPlain runs op on one node with a plain call; ctx carries the node
// deadline, which go-redis applies to the connection.
func runPlain(ctx context.Context, client redis.UniversalClient, op *nodeOp, c *nodeCall) {
	defer close(c.done)
	cmd := op.cmd(ctx, c.eval)
	err := client.Process(ctx, op.wrap(cmd))
	if !c.eval && op.script != nil && isNoScript(err) {
		c.eval = true
		cmd = op.cmd(ctx, true)
		_ = client.Process(ctx, op.wrap(cmd))
	}
	c.cmd = cmd
}

// timeoutErr is the error of node nd that gave no answer within timeout
// (cause: the client's error, if any): ErrNodeTimeout, unless the time
// went by failing to connect. go-redis retries a failed dial with a
// backoff, so a node that refuses connections looks like one that does
// not answer; when the node's client holds no connection, one dial with
// the client's own dialer tells them apart, and a refusal is reported as
// what it is.
func (nd *rlNode) timeoutErr(timeout time.Duration, cause error) error {
	if err := nd.dialErr(timeout); err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	if cause != nil {
		return fmt.Errorf("%w: no answer within %v (%v)", ErrNodeTimeout, timeout, cause)
	}
	return fmt.Errorf("%w: no answer within %v", ErrNodeTimeout, timeout)
}

// dialErr dials nd when its client has no open connection and returns the
// error of a dial that failed other than by timing out, else nil. The
// dial is bounded by timeout/4: a refusal comes back within a round trip.
func (nd *rlNode) dialErr(timeout time.Duration) error {
	c, ok := nd.client.(*redis.Client)
	if !ok || c.PoolStats().TotalConns > 0 {
		return nil
	}
	o := c.Options()
	if o.Dialer == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout/4)
	defer cancel()
	conn, err := o.Dialer(ctx, o.Network, o.Addr)
	if err == nil {
		_ = conn.Close()
		return nil
	}
	if isTimeout(err) || ctx.Err() != nil {
		return nil
	}
	return err
}

// isTimeout reports whether err is a deadline error of the connection or of
// the context.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// newQuorumError builds the error of an operation that failed with res.
func (r *Redlock) newQuorumError(op string, res fanResult, match error) *QuorumError {
	return &QuorumError{
		Op:      op,
		Nodes:   len(r.nodes),
		Quorum:  r.quorum,
		OK:      res.ok,
		Refused: res.refused,
		Errors:  res.errs,
		match:   match,
	}
}

// holdOutcome turns the result of a refresh, release or TTL fan-out into
// the operation's error: nil with a quorum; errGone (ErrNotHeld) when so
// many nodes no longer hold the lock (those that answered "not held", and
// the excluded ones that never had it) that no quorum can hold it; else a
// QuorumError that does not match ErrNotHeld, as the lock may still be held
// (for a release: matching ErrUnknownOutcome, as it may have been
// released).
func (r *Redlock) holdOutcome(op string, res fanResult, excluded int) error {
	switch {
	case res.ok >= r.quorum:
		return nil
	case res.refused+excluded > len(r.nodes)-r.quorum:
		if len(res.errs) == 0 {
			return errGone
		}
		return r.newQuorumError(op, res, errGone)
	case op == "release" && !allReplies(res.errs):
		return r.newQuorumError(op, res, ErrUnknownOutcome)
	}
	return r.newQuorumError(op, res, nil)
}

// allReplies reports whether every node error is a Redis error reply, after
// which the node wrote nothing.
func allReplies(errs []*NodeError) bool {
	for _, ne := range errs {
		var rerr redis.Error
		if !errors.As(ne.Err, &rerr) {
			return false
		}
	}
	return true
}

// obtainOutcome classifies a failed acquisition. Without node errors it is
// plain contention (nil, retry). With node errors it returns a QuorumError
// that matches ErrNotObtained, and may be retried, when contention decided
// the outcome: the nodes held by others alone made the quorum impossible,
// or they were needed together with failing nodes that could not have
// prevented it on their own. Otherwise (only failures, or failures enough
// on their own) the error is fatal.
func (r *Redlock) obtainOutcome(res fanResult) (qe *QuorumError, fatal bool) {
	if len(res.errs) == 0 {
		return nil, false
	}
	spare := len(r.nodes) - r.quorum
	if res.refused > spare || (res.refused > 0 && len(res.errs) <= spare) {
		return r.newQuorumError("obtain", res, ErrNotObtained), false
	}
	return r.newQuorumError("obtain", res, nil), true
}
