package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/distlock/distlock"
)

const statusUsage = `Usage: distlock status [flags] KEY

Shows whether the lock KEY is held (or done: marked by the library's Once,
which will not run the work again until the mark expires), how long the
current hold still lives unless refreshed, who holds it (the owner label
its holder stored: host:pid unless it chose another), and the last fencing
token handed out. It only reads: it never changes the lock and never shows
the holder's token. With several --redis URLs (Redlock) it shows each node
and whether a majority holds KEY.

Flags (before KEY):
  --redis URL       Redis to ask; default $REDIS_URL. Repeat it for each
                    node of a Redlock.
  --prefix STRING   namespace of the keys distlock writes (default "distlock:")
  --json            print one JSON object instead (see below)

JSON (--json), for scripts; these field names stay:
  {"key": "nightly-report", "state": "held", "ttl_ms": 24100, "fence": 7,
   "owner": "web-3:4242"}
  state is "free", "held", "done" or "unknown"; ttl_ms is how long the hold
  still lives (0 when free, -1 without expiry); fence is 0 when none was
  handed out; owner is "" when free or when the holder stored none. With a
  Redlock it also has "quorum" (a majority) and "nodes": one object per
  node with "node" (the URL, password blanked out), "state", "ttl_ms",
  "fence", "owner" and, when the node failed, "error".

With a Redlock, KEY is held when a majority of the nodes hold it, free
when the nodes that answered show that no majority can hold it, and
unknown otherwise: when the nodes that did not answer could make the
majority.

Exit status: 0 when the answer was printed, held, done or free; 3 when the state
is unknown (some nodes answered, too few to tell); 1 when Redis could not
answer (a single Redis, or too few Redlock nodes answered to tell
anything); 2 on a usage error.

Examples:
  distlock status --redis redis://redis-1:6379 nightly-report
  REDIS_URL=redis://:secret@redis-1:6379/2 distlock status deploy
`

func statusCmd(args []string) (code int) {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var urls urlList
	fs.Var(&urls, "redis", "")
	prefix := fs.String("prefix", distlock.DefaultKeyPrefix, "")
	asJSON := fs.Bool("json", false, "")
	if ok, code := parseFlags(fs, statusUsage, args); !ok {
		return code
	}
	switch rest := fs.Args(); {
	case len(rest) == 0:
		return usageErr("status", "missing KEY")
	case len(rest) > 1:
		return usageErr("status", "one KEY only, got %q", rest)
	case rest[0] == "":
		return usageErr("status", "empty KEY")
	}
	key := fs.Arg(0)
	list, err := redisURLs(urls)
	if err != nil {
		return usageErr("status", "%v", err)
	}
	if len(list) == 2 {
		return usageErr("status", "2 Redis URLs given: use one, or three or more Redlock nodes")
	}
	nodes, err := dial(list)
	if err != nil {
		errorf("status: %v", err)
		return exitUsage
	}
	b := &backend{nodes: nodes, what: nodes[0].name, prefix: *prefix}
	defer b.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.status(ctx, key)
	if err != nil {
		errorf("status %q: %s", key, trimPrefix(err))
		return exitError
	}
	defer func() {
		if st.held == stateUnknown {
			code = exitUnknown
		}
	}()
	if *asJSON {
		if err := printJSON(st.toJSON(key)); err != nil {
			errorf("status %q: %v", key, err)
			return exitError
		}
		return exitOK
	}
	printf("key:    %s\n", key)
	if len(st.nodes) > 1 {
		for _, n := range st.nodes {
			printf("node:   %s  %s\n", n.name, n.describe())
		}
	}
	printf("state:  %s\n", st.describe())
	if st.held != stateFree && st.owner != "" {
		printf("owner:  %s\n", printable(st.owner))
	}
	if st.fence > 0 {
		printf("fence:  %d (the next --fencing holder gets a higher one)\n", st.fence)
	} else {
		printf("fence:  none handed out yet\n")
	}
	return exitOK
}

// heldState is whether a lock is held, as far as status can tell.
type heldState int

const (
	stateFree heldState = iota
	stateHeld
	stateUnknown // too few Redlock nodes answered to tell
)

// lockState is what status found: overall and per node.
type lockState struct {
	held   heldState
	done   bool // the key holds Once's done marker (on any node)
	shared int  // shared leases (readers, permits) that hold it
	ttl    time.Duration
	fence  int64
	owner  string // the owner label stored with the lock, "" when none
	err    error
	name   string
	nodes  []lockState // per node, with several nodes
	quorum int
}

func (s lockState) describe() string {
	if s.err != nil {
		return "error: " + trimPrefix(s.err)
	}
	var held string
	switch {
	case s.held == stateUnknown:
		held = "unknown"
	case s.held == stateFree:
		held = "free"
	case s.done:
		held = fmt.Sprintf("done (Once ran it; taken for another %v)", roundTTL(s.ttl))
	case s.ttl < 0:
		held = "held, with no expiry (set by hand?)"
	case s.shared > 0:
		held = fmt.Sprintf("held by %d shared leases (readers or permits), the longest expires in %v unless refreshed", s.shared, roundTTL(s.ttl))
	default:
		held = fmt.Sprintf("held, expires in %v unless refreshed", roundTTL(s.ttl))
	}
	if len(s.nodes) > 1 {
		n, e := 0, 0
		for _, ns := range s.nodes {
			switch {
			case ns.err != nil:
				e++
			case ns.held == stateHeld:
				n++
			}
		}
		if e > 0 {
			held = fmt.Sprintf("%s (held on %d of %d nodes, %d did not answer; a majority is %d)", held, n, len(s.nodes), e, s.quorum)
		} else {
			held = fmt.Sprintf("%s (held on %d of %d nodes; a majority is %d)", held, n, len(s.nodes), s.quorum)
		}
	}
	return held
}

// status asks every node about key. One node answers for itself; with
// several, KEY is held when a majority holds it (its TTL is then the
// majority's: the shortest TTL among the longest-lived majority).
func (b *backend) status(ctx context.Context, key string) (lockState, error) {
	opts := []distlock.Option{distlock.WithKeyPrefix(b.prefix)}
	if len(b.nodes) == 1 {
		st, err := distlock.New(b.nodes[0].client, distlock.WithPipelining(false)).Status(ctx, key, opts...)
		if err != nil {
			return lockState{}, fmt.Errorf("%s: %w", b.nodes[0].name, err)
		}
		return lockState{held: stateOf(st.Held), done: st.Done, shared: st.Shared, ttl: st.TTL, fence: st.Fence, owner: st.Owner, name: b.nodes[0].name}, nil
	}
	all := lockState{quorum: len(b.nodes)/2 + 1}
	var ttls []time.Duration
	var errs, owners []string
	for _, n := range b.nodes {
		st, err := distlock.New(n.client, distlock.WithPipelining(false)).Status(ctx, key, opts...)
		ns := lockState{held: stateOf(st.Held), done: st.Done, ttl: st.TTL, fence: st.Fence, owner: st.Owner, err: err, name: n.name}
		all.nodes = append(all.nodes, ns)
		all.done = all.done || st.Done
		if err != nil {
			errs = append(errs, n.name+": "+err.Error())
			continue
		}
		all.fence = max(all.fence, st.Fence)
		if st.Held {
			ttls = append(ttls, st.TTL)
			owners = append(owners, st.Owner)
		}
	}
	if len(errs) >= all.quorum {
		return all, fmt.Errorf("no majority answered: %s", strings.Join(errs, "; "))
	}
	switch {
	case len(ttls)+len(errs) < all.quorum:
		all.held = stateFree
	case len(ttls) < all.quorum:
		// The nodes that did not answer may hold it: a majority may.
		all.held = stateUnknown
	default:
		all.held = stateHeld
		all.owner = mostCommon(owners)
		// Sorted descending, the quorum-th TTL is how long a majority
		// still holds it; -1 (no expiry) counts as the longest.
		for i := range ttls {
			for j := i + 1; j < len(ttls); j++ {
				if longer(ttls[j], ttls[i]) {
					ttls[i], ttls[j] = ttls[j], ttls[i]
				}
			}
		}
		all.ttl = ttls[all.quorum-1]
	}
	return all, nil
}

// mostCommon returns the value that occurs most often in vs (the first
// of those that tie), "" when vs is empty.
func mostCommon(vs []string) string {
	best, bestN := "", 0
	for i, v := range vs {
		n := 0
		for _, w := range vs[i:] {
			if w == v {
				n++
			}
		}
		if n > bestN {
			best, bestN = v, n
		}
	}
	return best
}

func stateOf(held bool) heldState {
	if held {
		return stateHeld
	}
	return stateFree
}

func longer(a, b time.Duration) bool {
	switch {
	case a < 0:
		return b >= 0
	case b < 0:
		return false
	}
	return a > b
}
