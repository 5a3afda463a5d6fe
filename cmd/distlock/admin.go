package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/distlock/distlock"
)

// The operator's commands: list and release --force, and the JSON that
// list and status print with --json.

const listUsage = `Usage: distlock list [flags] [PATTERN]

Lists the locks whose names match PATTERN, sorted by name: each one's
name, how long it still lives unless refreshed, the last fencing token
handed out for it, who holds it (the owner label its holder stored:
host:pid unless it chose another; never the token) and its kind:

  lock   held by distlock run, or by a program's Obtain, Do, Lead, or Once
         while the work runs
  done   Once's mark that the work was done: Once skips it until it expires
  tick   a tick claimed by distlock run --once-per, OncePerTick or ClaimTick
  other  a key named like a lock that holds something else (not distlock's)

PATTERN is a Redis glob over the name without the prefix (*, ?, [abc],
\ to quote); default *. It only reads. It walks the whole keyspace with
SCAN, about one round trip per 1,000 keys. With several --redis URLs
(Redlock) it lists the keys of every node, and NODES tells how many
nodes have each one.

Flags (before PATTERN):
  --redis URL       Redis to ask; default $REDIS_URL. Repeat it for each
                    node of a Redlock.
  --prefix STRING   namespace of the keys distlock writes (default "distlock:")
  --json            print a JSON array instead of the table (see below)

JSON (--json), for scripts; these field names stay: one object per lock,
  {"key": "nightly-report", "kind": "lock", "ttl_ms": 24100, "fence": 7,
   "owner": "web-3:4242", "nodes": 1}
kind is "lock", "done", "tick" or "other"; ttl_ms is -1 for a key without
expiry; fence is 0 when none was handed out; owner is "" when the holder
stored none; nodes is how many Redlock nodes have the key (1 on a single
Redis). No lock: [].

Exit status: 0 when listed (also when nothing matched); 1 when Redis, or a
Redlock node, failed (what the others have is still printed); 2 on a
usage error.

Examples:
  distlock list --redis redis://redis-1:6379
  distlock list --redis redis://redis-1:6379 'report*'
  distlock list --json | jq -r '.[] | select(.ttl_ms > 600000) | .key'
`

func listCmd(args []string) int {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	var urls urlList
	fs.Var(&urls, "redis", "")
	prefix := fs.String("prefix", distlock.DefaultKeyPrefix, "")
	asJSON := fs.Bool("json", false, "")
	if ok, code := parseFlags(fs, listUsage, args); !ok {
		return code
	}
	pattern := "*"
	switch rest := fs.Args(); {
	case len(rest) > 1:
		return usageErr("list", "one PATTERN only, got %q (quote it: the shell expands *)", rest)
	case len(rest) == 1 && rest[0] != "":
		pattern = rest[0]
	}
	b, code := connectAdmin("list", urls, *prefix)
	if b == nil {
		return code
	}
	defer b.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	locks, err := b.admin().List(ctx, pattern)
	redlock := len(b.nodes) > 1
	if *asJSON {
		out := make([]lockJSON, len(locks))
		for i, l := range locks {
			out[i] = lockJSON{Key: l.Key, Kind: l.Kind.String(), TTLms: ttlMs(l.TTL), Fence: l.Fence, Owner: l.Owner, Nodes: l.Nodes}
		}
		if perr := printJSON(out); perr != nil && err == nil {
			err = perr
		}
	} else {
		printTable(locks, redlock, len(b.nodes))
	}
	if err != nil {
		errorf("list %q: %s", pattern, trimPrefix(err))
		return exitError
	}
	return exitOK
}

// printTable prints locks as the table of list.
func printTable(locks []distlock.LockInfo, redlock bool, nodes int) {
	var buf bytes.Buffer
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	head := "KEY\tTTL\tFENCE\tOWNER\tKIND"
	if redlock {
		head += "\tNODES"
	}
	fmt.Fprintln(w, head)
	for _, l := range locks {
		ttl := "no expiry"
		if l.TTL >= 0 {
			ttl = roundTTL(l.TTL).String()
		}
		fence := "-"
		if l.Fence > 0 {
			fence = strconv.FormatInt(l.Fence, 10)
		}
		owner := "-"
		if l.Owner != "" {
			owner = printable(l.Owner)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", printable(l.Key), ttl, fence, owner, l.Kind)
		if redlock {
			line += fmt.Sprintf("\t%d/%d", l.Nodes, nodes)
		}
		fmt.Fprintln(w, line)
	}
	_ = w.Flush()
	printf("%s", buf.String())
}

const releaseUsage = `Usage: distlock release --force [--yes] [flags] KEY

Deletes the lock KEY whoever holds it: for an operator clearing a lock
whose holder is dead or stuck (check with distlock status or list first).
Callers waiting for KEY are woken at once. A holder that still runs learns
at its next refresh (within a third of its TTL; distlock run then stops
its command) that the lock was force-released; until then it may still act
as the holder, so stop it first where you can. A Once done mark is deleted
too (Once may then run the work again).

--force is required: the holder alone releases its lock (with its token);
this command does it without. Unless --yes is given it shows the lock
(owner, TTL, fence) and asks on standard input: y or yes releases it,
anything else (or no answer) leaves it.

Flags (before KEY):
  --force           required: delete the lock whoever holds it
  --yes             do not ask for confirmation
  --redis URL       Redis to act on; default $REDIS_URL. Repeat it for each
                    node of a Redlock: KEY is deleted on every node.
  --prefix STRING   namespace of the keys distlock writes (default "distlock:")

Exit status: 0 when released; 1 when not: KEY was not held, the answer was
not yes, or Redis (or a Redlock node) failed; 2 on a usage error (also
without --force).

Examples:
  distlock release --force --redis redis://redis-1:6379 nightly-report
  distlock release --force --yes --redis redis://redis-1:6379 nightly-report
`

func releaseCmd(args []string) int {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	var urls urlList
	fs.Var(&urls, "redis", "")
	prefix := fs.String("prefix", distlock.DefaultKeyPrefix, "")
	force := fs.Bool("force", false, "")
	yes := fs.Bool("yes", false, "")
	if ok, code := parseFlags(fs, releaseUsage, args); !ok {
		return code
	}
	switch rest := fs.Args(); {
	case len(rest) == 0:
		return usageErr("release", "missing KEY")
	case len(rest) > 1:
		return usageErr("release", "one KEY only, got %q (flags go before KEY)", rest)
	case rest[0] == "":
		return usageErr("release", "empty KEY")
	case !*force:
		return usageErr("release", "--force is required: release deletes the lock whoever holds it (only its holder can release it otherwise)")
	}
	key := fs.Arg(0)
	b, code := connectAdmin("release", urls, *prefix)
	if b == nil {
		return code
	}
	defer b.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !*yes {
		st, err := b.status(ctx, key)
		switch {
		case err != nil:
			errorf("release %q: %s", key, trimPrefix(err))
			return exitError
		case st.held == stateFree:
			errorf("release %q: not held: nothing to release", key)
			return exitError
		}
		cancel() // the answer may take a while: a new deadline after it
		fmt.Fprint(errOut, redact(fmt.Sprintf("Force-release lock %q (%s)? [y/N] ", key, st.summary())))
		if !confirmed(os.Stdin) {
			errorf("release %q: not confirmed; nothing released", key)
			return exitError
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
	}
	err := b.admin().ForceRelease(ctx, key)
	switch {
	case errors.Is(err, distlock.ErrNotHeld) && !errors.Is(err, distlock.ErrUnknownOutcome):
		errorf("release %q: not held: nothing to release", key)
		return exitError
	case err != nil:
		errorf("release %q: %s", key, trimPrefix(err))
		return exitError
	}
	printf("released %s (force): waiters woken; its holder learns at its next refresh\n", strconv.Quote(key))
	return exitOK
}

// confirmed reads one line from r and reports whether it says yes.
func confirmed(r io.Reader) bool {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// summary describes a lock for the confirmation question: its state, its
// owner and its fence.
func (s lockState) summary() string {
	parts := []string{s.describe()}
	if s.owner != "" {
		parts = append(parts, "owner "+printable(s.owner))
	}
	if s.fence > 0 {
		parts = append(parts, fmt.Sprintf("fence %d", s.fence))
	}
	return strings.Join(parts, "; ")
}

// connectAdmin connects to the Redis (or the Redlock nodes) given to an
// operator's command. On failure it has printed why and returns nil and
// the exit status.
func connectAdmin(cmd string, urls urlList, prefix string) (*backend, int) {
	list, err := redisURLs(urls)
	if err != nil {
		return nil, usageErr(cmd, "%v", err)
	}
	b, err := connect(list, prefix, 0)
	if err != nil {
		errorf("%s: %v", cmd, err)
		return nil, exitUsage
	}
	return b, exitOK
}

// admin returns the backend's lock service as an operator's.
func (b *backend) admin() distlock.LockAdmin {
	return b.locker.(distlock.LockAdmin)
}

// lockJSON is one lock in list --json. The field names are documented in
// listUsage and stay.
type lockJSON struct {
	Key   string `json:"key"`
	Kind  string `json:"kind"`
	TTLms int64  `json:"ttl_ms"`
	Fence int64  `json:"fence"`
	Owner string `json:"owner"`
	Nodes int    `json:"nodes"`
}

// statusJSON is status --json. The field names are documented in
// statusUsage and stay.
type statusJSON struct {
	Key    string           `json:"key"`
	State  string           `json:"state"`
	TTLms  int64            `json:"ttl_ms"`
	Fence  int64            `json:"fence"`
	Owner  string           `json:"owner"`
	Quorum int              `json:"quorum,omitempty"`
	Nodes  []nodeStatusJSON `json:"nodes,omitempty"`
}

// nodeStatusJSON is one Redlock node in status --json.
type nodeStatusJSON struct {
	Node  string `json:"node"`
	State string `json:"state"`
	TTLms int64  `json:"ttl_ms"`
	Fence int64  `json:"fence"`
	Owner string `json:"owner"`
	Error string `json:"error,omitempty"`
}

// toJSON returns the status --json of the lock key.
func (s lockState) toJSON(key string) statusJSON {
	j := statusJSON{Key: key, State: s.stateName(), TTLms: s.ttlMs(), Fence: s.fence, Owner: s.owner}
	if len(s.nodes) > 1 {
		j.Quorum = s.quorum
		j.Nodes = make([]nodeStatusJSON, len(s.nodes))
		for i, n := range s.nodes {
			nj := nodeStatusJSON{Node: n.name, State: n.stateName(), TTLms: n.ttlMs(), Fence: n.fence, Owner: n.owner}
			if n.err != nil {
				nj = nodeStatusJSON{Node: n.name, State: "unknown", Error: trimPrefix(n.err)}
			}
			j.Nodes[i] = nj
		}
	}
	return j
}

// stateName is the state of status --json.
func (s lockState) stateName() string {
	switch {
	case s.held == stateUnknown:
		return "unknown"
	case s.held == stateFree:
		return "free"
	case s.done:
		return "done"
	}
	return "held"
}

// ttlMs is the ttl_ms of status --json: 0 when free.
func (s lockState) ttlMs() int64 {
	if s.held != stateHeld {
		return 0
	}
	return ttlMs(s.ttl)
}

// ttlMs is a TTL in whole milliseconds, -1 for none (no expiry).
func ttlMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

// printJSON prints v as one line of JSON.
func printJSON(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	printf("%s", buf.String())
	return nil
}

// printable returns s as it is when it prints as itself, else quoted (Go
// syntax), so that a key or label with control characters cannot disturb
// a terminal or the table.
func printable(s string) string {
	if q := strconv.Quote(s); q[1:len(q)-1] != s {
		return q
	}
	return s
}
