package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/distlock/distlock"
)

// urlList is a repeatable --redis flag.
type urlList []string

func (u *urlList) String() string     { return strings.Join(redactAll(*u), ",") }
func (u *urlList) Set(v string) error { *u = append(*u, v); return nil }

// redisURLs returns the URLs given with --redis, or else the one in
// $REDIS_URL.
func redisURLs(flagged urlList) ([]string, error) {
	if len(flagged) > 0 {
		return flagged, nil
	}
	if env := os.Getenv("REDIS_URL"); env != "" {
		return []string{env}, nil
	}
	return nil, errors.New("no Redis given: use --redis URL or set REDIS_URL")
}

// userinfoPassword matches the password part of "scheme://user:password@"
// up to the last '@' before the host (Go's URL parser takes a raw '@' in a
// password), and passwordParam a password given as a query parameter.
var (
	userinfoPassword = regexp.MustCompile(`(://[^/@:\s]*:)[^/\s]*@`)
	passwordParam    = regexp.MustCompile(`(?i)((?:password|pass|pwd)=)[^&\s]*`)
)

// secrets are the passwords of the URLs in use, in every form a message may
// show them in (as typed, decoded, escaped, quoted).
var secrets []string

// minPiece is the length, in characters, of the pieces of a password that
// redact blanks out: no run of minPiece characters of a password is ever
// printed. A password shorter than that is blanked out whole when it has 3
// characters or more; shorter ones would blank out ordinary text.
const minPiece = 4

// redact blanks out passwords in s: those in URL form, and every piece of
// minPiece characters of the passwords of the URLs given to distlock,
// wherever it appears.
func redact(s string) string {
	s = userinfoPassword.ReplaceAllString(s, "${1}\x00@")
	s = passwordParam.ReplaceAllString(s, "${1}\x00")
	fill := filler()
	for {
		r := mask(s, fill)
		if fill != "" || r == s {
			return r
		}
		// Without a filler, neighbours of a removed run meet: look again.
		s = r
	}
}

// mask replaces each run of s covered by a piece of a secret (or a NUL
// byte, which marks a password found by form) with fill.
func mask(s, fill string) string {
	masked := make([]bool, len(s))
	for _, p := range secrets {
		for _, piece := range pieces(p) {
			for i := 0; ; {
				j := strings.Index(s[i:], piece)
				if j < 0 {
					break
				}
				for k := i + j; k < i+j+len(piece); k++ {
					masked[k] = true
				}
				i += j + 1
			}
		}
	}
	for i := range s {
		if s[i] == 0 {
			masked[i] = true
		}
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if !masked[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		for i < len(s) && masked[i] {
			i++
		}
		b.WriteString(fill)
	}
	return b.String()
}

// pieces returns the substrings of p of minPiece characters (a byte that is
// not UTF-8 counts as one), or p itself when it is shorter but has 3 bytes
// or more.
func pieces(p string) []string {
	var starts []int
	for i := 0; i < len(p); {
		starts = append(starts, i)
		_, n := utf8.DecodeRuneInString(p[i:])
		i += n
	}
	starts = append(starts, len(p))
	if len(starts)-1 < minPiece {
		if len(p) >= 3 {
			return []string{p}
		}
		return nil
	}
	out := make([]string, 0, len(starts)-minPiece)
	for i := 0; i+minPiece < len(starts); i++ {
		out = append(out, p[starts[i]:starts[i+minPiece]])
	}
	return out
}

// filler returns "xxxxx", or a run of another character when a password
// holds an 'x': the filler must hold no character of any password, so
// that it never makes a piece of one with its neighbours. When passwords
// hold every candidate, it returns "" (runs are removed).
func filler() string {
	for _, c := range "x*#~?!%=+_" {
		clean := true
		for _, p := range secrets {
			if strings.ContainsRune(p, c) {
				clean = false
				break
			}
		}
		if clean {
			return strings.Repeat(string(c), 5)
		}
	}
	return ""
}

func redactAll(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = redact(u)
	}
	return out
}

// remember adds the password of a URL, if any, to the secrets, even when
// the URL does not parse or has no scheme: the password is what follows the
// first ':' of the user information, which ends at the last '@'.
func remember(raw string) {
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok || pw == "" {
		return
	}
	forms := []string{pw}
	if dec, err := url.PathUnescape(pw); err == nil {
		forms = append(forms, dec)
	}
	if dec, err := url.QueryUnescape(pw); err == nil {
		forms = append(forms, dec)
	}
	for _, f := range forms[:len(forms):len(forms)] {
		q := strconv.Quote(f)
		forms = append(forms, url.QueryEscape(f), url.PathEscape(f),
			strings.TrimPrefix(url.UserPassword("", f).String(), ":"), q[1:len(q)-1])
	}
	for _, f := range forms {
		if !slices.Contains(secrets, f) {
			secrets = append(secrets, f)
		}
	}
}

// quietLogger drops go-redis's own log lines (dial failures, pool
// events): distlock reports each failure once, in its own words.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// node is one Redis server: its client and how to name it in messages.
type node struct {
	name   string // the URL, password blanked out
	client *redis.Client
}

// Client timeouts of distlock where the URL does not set them: short,
// because distlock has one caller and must answer (and exit) in bounded
// time when a Redis node stops answering.
const (
	cliDialTimeout = 2 * time.Second
	cliIOTimeout   = time.Second
)

// dial makes a client for each URL. It checks the URLs only; nothing is
// sent to Redis yet.
func dial(urls []string) ([]node, error) {
	for _, raw := range urls {
		remember(raw)
	}
	nodes := make([]node, 0, len(urls))
	for _, raw := range urls {
		if !strings.Contains(raw, "://") {
			closeNodes(nodes)
			return nil, fmt.Errorf("Redis URL %s has no scheme: write redis://%s (rediss:// for TLS)", redact(raw), redact(raw))
		}
		opts, err := redis.ParseURL(raw)
		if err != nil {
			closeNodes(nodes)
			return nil, fmt.Errorf("bad Redis URL %s: %w", redact(raw), err)
		}
		if opts.DialerRetries == 0 {
			opts.DialerRetries = 2 // fail fast when Redis is down
		}
		if opts.MaintNotificationsConfig == nil {
			opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		}
		// Set before NewClient, which fills in its own defaults (5s, 3s).
		if opts.DialTimeout == 0 {
			opts.DialTimeout = cliDialTimeout
		}
		if opts.ReadTimeout == 0 {
			opts.ReadTimeout = cliIOTimeout
		}
		if opts.WriteTimeout == 0 {
			opts.WriteTimeout = cliIOTimeout
		}
		// A ctx deadline bounds each command too, not only the timeouts.
		opts.ContextTimeoutEnabled = true
		nodes = append(nodes, node{name: redact(raw), client: redis.NewClient(opts)})
	}
	return nodes, nil
}

func closeNodes(nodes []node) {
	for _, n := range nodes {
		_ = n.client.Close()
	}
}

// obtainer is what run needs of a Locker or a Redlock.
type obtainer interface {
	Obtain(ctx context.Context, key string, opts ...distlock.Option) (*distlock.Lock, error)
	ClaimTick(ctx context.Context, key string, period time.Duration, opts ...distlock.Option) (*distlock.TickClaim, error)
}

// backend is the lock service for the URLs given: one Redis (a Locker) or
// three and more independent nodes (a Redlock).
type backend struct {
	nodes  []node
	locker obtainer
	what   string // for messages: the server, or "Redlock over N nodes"
	prefix string // the key prefix
}

// connect returns the backend for urls. nodeTimeout (0: the library's
// default) matters to Redlock only.
func connect(urls []string, prefix string, nodeTimeout time.Duration) (*backend, error) {
	switch n := len(urls); {
	case n == 2:
		return nil, errors.New("2 Redis URLs given: use one (a single Redis) or three or more independent nodes (Redlock)")
	case n >= 3:
		return connectRedlock(urls, prefix, nodeTimeout)
	}
	nodes, err := dial(urls)
	if err != nil {
		return nil, err
	}
	// No autopipelining: distlock has one caller, and the autopipeliner's
	// drain on Close can hold up the exit.
	lk := distlock.New(nodes[0].client, distlock.WithKeyPrefix(prefix), distlock.WithPipelining(false))
	return &backend{nodes: nodes, locker: lk, what: nodes[0].name, prefix: prefix}, nil
}

func (b *backend) Close() { closeNodes(b.nodes) }
