package reliability_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/redistest"
)

// every runs f every d until ctx is done and returns how often it ran.
func every(ctx context.Context, d time.Duration, f func()) int {
	n := 0
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return n
		case <-tick.C:
			f()
			n++
		}
	}
}

// TestCheckerFaultsSingleNode runs the checker on one node while faults
// are injected between the library and Redis. Mutual exclusion must hold;
// the faults may cost errors (Redis errors are returned, never disguised
// as ErrNotObtained) but no violation.
func TestCheckerFaultsSingleNode(t *testing.T) {
	tests := []struct {
		name   string
		inject func(t *testing.T, srv *redistest.Server, p *redistest.Proxy) func(context.Context) string
	}{
		{"script-flush", func(t *testing.T, srv *redistest.Server, _ *redistest.Proxy) func(context.Context) string {
			return func(ctx context.Context) string {
				n := every(ctx, 50*time.Millisecond, func() { srv.Exec(t, "SCRIPT", "FLUSH") })
				return fmt.Sprintf("SCRIPT FLUSH x%d", n)
			}
		}},
		{"client-kill", func(t *testing.T, srv *redistest.Server, _ *redistest.Proxy) func(context.Context) string {
			return func(ctx context.Context) string {
				killed := int64(0)
				n := every(ctx, 200*time.Millisecond, func() {
					for _, typ := range []string{"normal", "pubsub"} {
						k, _ := srv.Exec(t, "CLIENT", "KILL", "TYPE", typ).(int64)
						killed += k
					}
				})
				return fmt.Sprintf("CLIENT KILL x%d (%d connections)", n, killed)
			}
		}},
		{"proxy", func(t *testing.T, _ *redistest.Server, p *redistest.Proxy) func(context.Context) string {
			return func(ctx context.Context) string {
				drops, stalls := 0, 0
				i := 0
				every(ctx, 150*time.Millisecond, func() {
					switch i % 4 {
					case 0:
						p.SetLatency(5 * time.Millisecond)
					case 1:
						p.SetLatency(0)
						p.DropAll()
						drops++
					case 2:
						p.Stall(true)
						stalls++
					case 3:
						p.Stall(false)
					}
					i++
				})
				p.Stall(false)
				p.SetLatency(0)
				return fmt.Sprintf("proxy: 5ms latency, %d DropAll, %d stalls of 150ms", drops, stalls)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			store := redistest.Start(t)
			p := redistest.NewProxy(t, srv.Addr())
			out := runChecker(t, scenario{
				mode:       modeSingle,
				lockAddrs:  []string{p.Addr()},
				store:      store,
				keys:       plainKeys(3),
				procs:      3,
				goroutines: 4,
				duration:   runFor(t, 3*time.Second),
				ttl:        2 * time.Second,
				fencing:    true,
				during:     tt.inject(t, srv, p),
			})
			if out.LostUpdates != 0 || out.Overlaps != 0 || out.FenceRejected != 0 || out.StaleAccepted != 0 || out.LostInSection != 0 {
				t.Errorf("violations under %s: lost_updates=%d overlaps=%d fence_rejected=%d stale_accepted=%d lost_in_section=%d",
					out.Faults, out.LostUpdates, out.Overlaps, out.FenceRejected, out.StaleAccepted, out.LostInSection)
			}
			if tt.name == "script-flush" && out.Errors != 0 {
				t.Errorf("SCRIPT FLUSH must be invisible (EVALSHA falls back to EVAL), got %d errors: %v", out.Errors, out.ErrSamples)
			}
		})
	}
}

// TestCheckerRedlock runs the checker over five independent nodes while a
// minority and then a majority of them is paused (SIGSTOP). With a minority
// down the lock keeps working; with a majority down Obtain fails with
// errors; mutual exclusion holds throughout.
func TestCheckerRedlock(t *testing.T) {
	nodes := redistest.StartN(t, 5)
	store := redistest.Start(t)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	t.Run("clean", func(t *testing.T) {
		requireExclusive(t, runChecker(t, scenario{
			mode: modeRedlock, lockAddrs: addrs, store: store, keys: plainKeys(3),
			procs: 3, goroutines: 4, duration: runFor(t, 2*time.Second), ttl: 2 * time.Second, fencing: true,
		}))
	})
	d := runFor(t, 4*time.Second)
	out := runChecker(t, scenario{
		mode:       modeRedlock,
		lockAddrs:  addrs,
		store:      store,
		keys:       plainKeys(3),
		procs:      3,
		goroutines: 4,
		duration:   d,
		ttl:        2 * time.Second,
		fencing:    true,
		during: func(ctx context.Context) string {
			minority, majority := 0, 0
			i := 0
			every(ctx, d/8, func() {
				switch i % 4 {
				case 0: // minority: nodes 0 and 1
					nodes[0].Pause(t)
					nodes[1].Pause(t)
					minority++
				case 1:
					nodes[0].Resume(t)
					nodes[1].Resume(t)
				case 2: // majority: nodes 2, 3 and 4
					nodes[2].Pause(t)
					nodes[3].Pause(t)
					nodes[4].Pause(t)
					majority++
				case 3:
					nodes[2].Resume(t)
					nodes[3].Resume(t)
					nodes[4].Resume(t)
				}
				i++
			})
			for _, n := range nodes {
				n.Resume(t)
			}
			return fmt.Sprintf("%d minority pauses (2/5), %d majority pauses (3/5), %v each", minority, majority, d/8)
		},
	})
	if out.LostUpdates != 0 || out.Overlaps != 0 || out.FenceRejected != 0 || out.StaleAccepted != 0 || out.LostInSection != 0 {
		t.Errorf("violations: lost_updates=%d overlaps=%d fence_rejected=%d stale_accepted=%d lost_in_section=%d",
			out.LostUpdates, out.Overlaps, out.FenceRejected, out.StaleAccepted, out.LostInSection)
	}
}

// TestStalledHolderRedlock is TestStalledHolder over five Redlock nodes.
func TestStalledHolderRedlock(t *testing.T) {
	trials := 3
	if soaking() {
		trials = 30
	}
	nodes := redistest.StartN(t, 5)
	store := redistest.Start(t)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	svc, err := newLockService(modeRedlock, addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	runStallTrials(t, trials, modeRedlock, addrs, store, svc)
}
