// Command distlock runs commands under distributed locks on Redis, shows
// the state of a lock, lists the locks held and clears a stuck one, and
// demonstrates once-per-tick scheduled jobs.
//
//	distlock run [--redis URL]... [--once-per D] [--ttl D] [--wait D] [--grace D] [--fencing] [--owner LABEL] [--conflict-exit-code N] KEY -- COMMAND [ARG...]
//	distlock status [--redis URL]... [--json] KEY
//	distlock list [--redis URL]... [--json] [PATTERN]
//	distlock release --force [--yes] [--redis URL]... KEY
//	distlock demo [--redis URL] [--replicas N] [--ticks N]
//
// Run "distlock help" or "distlock COMMAND --help" for the details.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Exit statuses of distlock itself; a command run by "distlock run" passes
// its own through.
const (
	exitOK       = 0
	exitError    = 1  // Redis unreachable, lock lost, demo failed
	exitUsage    = 2  // bad flags or arguments
	exitUnknown  = 3  // status: too few Redlock nodes answered to tell
	exitConflict = 75 // EX_TEMPFAIL: the lock is held elsewhere
	exitNoExec   = 126
	exitNotFound = 127
)

const topUsage = `distlock runs commands under distributed locks on Redis.

Usage:
  distlock run [flags] KEY -- COMMAND [ARG...]   run COMMAND while holding the lock KEY
  distlock status [flags] KEY                    show whether KEY is held, by whom, its TTL and fence
  distlock list [flags] [PATTERN]                list the locks held: TTL, fence, owner, kind
  distlock release --force [flags] KEY           delete a stuck lock whoever holds it (asks first)
  distlock demo [flags]                          watch replicas of a scheduled job run once per tick
  distlock help [COMMAND]                        show this help, or a command's

Redis is given with --redis URL (redis://[user:password@]host:port[/db],
rediss:// for TLS) or $REDIS_URL.

Examples:
  go run ./cmd/distlock demo
  # crontab, the same line on every machine: runs once per night on one
  0 3 * * *  distlock run --redis redis://redis-1:6379 --once-per 1h nightly-report -- ./report.sh
  distlock run --redis redis://redis-1:6379 --wait 1m migrate -- ./migrate up
  distlock status --redis redis://redis-1:6379 nightly-report
  distlock list --redis redis://redis-1:6379 'nightly-*'
  distlock release --force --redis redis://redis-1:6379 nightly-report

Run "distlock COMMAND --help" for a command's flags and examples.
`

// out and errOut are where distlock writes; everything goes through redact
// on its way there.
var (
	out    io.Writer = os.Stdout
	errOut io.Writer = os.Stderr
)

// errorf prints a one-line error of distlock, passwords blanked out.
func errorf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
	fmt.Fprintln(errOut, redact("distlock: "+msg))
}

// printf prints to standard output, passwords blanked out.
func printf(format string, args ...any) {
	fmt.Fprint(out, redact(fmt.Sprintf(format, args...)))
}

func main() {
	if parent, ok := guardMode(); ok {
		os.Exit(guardMain(parent, os.Args[1:]))
	}
	redis.SetLogger(quietLogger{})
	os.Exit(dispatch(os.Args[1:]))
}

func dispatch(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(errOut, topUsage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return runCmd(rest)
	case "status":
		return statusCmd(rest)
	case "list":
		return listCmd(rest)
	case "release":
		return releaseCmd(rest)
	case "demo":
		return demoCmd(rest)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && cmd == "help" {
			return dispatch([]string{rest[0], "--help"})
		}
		fmt.Fprint(out, topUsage)
		return exitOK
	default:
		errorf("unknown command %q (want run, status, list, release, demo or help)", cmd)
		return exitUsage
	}
}

// parseFlags parses a command's flags. It prints the usage on --help
// (ok false, code 0) and a one-line error on bad flags (ok false, code 2).
func parseFlags(fs *flag.FlagSet, usage string, args []string) (ok bool, code int) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case err == nil:
		return true, 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(out, usage)
		return false, exitOK
	default:
		errorf("%s: %v (see distlock %s --help)", fs.Name(), err, fs.Name())
		return false, exitUsage
	}
}

// usageErr prints a one-line usage error of a command.
func usageErr(cmd, format string, args ...any) int {
	errorf("%s: %s (see distlock %s --help)", cmd, fmt.Sprintf(format, args...), cmd)
	return exitUsage
}

// durationValue is a duration flag whose error for a bare number suggests
// the unit.
type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("a duration needs a unit: did you mean %ss?", s)
		}
		return fmt.Errorf("not a duration (e.g. 500ms, 10s, 1m): %q", s)
	}
	*d = durationValue(v)
	return nil
}

// durationFlag defines a duration flag that hints at the unit.
func durationFlag(fs *flag.FlagSet, name string, value time.Duration) *time.Duration {
	p := new(time.Duration)
	*p = value
	fs.Var((*durationValue)(p), name, "")
	return p
}
