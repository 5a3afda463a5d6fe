package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/distlock/distlock"
)

// brokenOncePerTick claims the tick as OncePerTick does, but after the run
// keeps it taken for only 5ms instead of until the tick's window is over:
// a replica whose timer fires later than that runs the job again for the
// same tick. The demo must catch it.
func brokenOncePerTick(ctx context.Context, lk *distlock.Locker, key string, period time.Duration, job func(context.Context, time.Time) error) error {
	c, err := lk.ClaimTick(ctx, key, period)
	if errors.Is(err, distlock.ErrNotObtained) && ctx.Err() == nil {
		return nil
	}
	if err != nil {
		return err
	}
	jobErr := job(ctx, c.Tick())
	if err := c.Finish(ctx); err != nil {
		return errors.Join(jobErr, err)
	}
	// The bug: give the tick back 5ms after the run.
	return errors.Join(jobErr, c.Lock().Refresh(ctx, 5*time.Millisecond))
}

// demoInProcess runs the embedded demo in this process with once as its
// OncePerTick way, and returns its exit status and output.
func demoInProcess(t *testing.T, once onceFunc) (int, string) {
	t.Helper()
	var o, e bytes.Buffer
	saveOut, saveErr := out, errOut
	out, errOut = &o, &e
	defer func() { out, errOut = saveOut, saveErr }()
	code := runDemo(demoConfig{replicas: 3, ticks: 3, period: 500 * time.Millisecond, once: once})
	return code, o.String() + e.String()
}

// TestDemoDetectsBrokenClaim: with a tick claim that is given back 5ms
// after the run, the replica whose clock is 10% of the period behind fires
// long after that and runs the job again; the embedded demo must say FAIL.
// (Its Redis used to keep every key forever, so this printed PASS.)
func TestDemoDetectsBrokenClaim(t *testing.T) {
	code, output := demoInProcess(t, brokenOncePerTick)
	assert.Equal(t, exitError, code, output)
	assert.Regexp(t, `(?m)^verdict: FAIL: OncePerTick did not run the job once per tick \(2 runs at `, output)
}

// TestDemoPassesWithRealClaim is the same demo with the real OncePerTick.
func TestDemoPassesWithRealClaim(t *testing.T) {
	code, output := demoInProcess(t, runOncePerTick)
	assert.Equal(t, exitOK, code, output)
	assert.Regexp(t, `(?m)^verdict: PASS: with OncePerTick the job ran exactly once in each of the 3 ticks`, output)
}
