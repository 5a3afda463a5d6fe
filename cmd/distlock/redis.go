package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

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

// userinfoPassword matches the password part of "scheme://user:password@",
// and passwordParam a password given as a query parameter.
var (
	userinfoPassword = regexp.MustCompile(`(://[^/@:\s]*:)[^@\s]*@`)
	rawPassword      = regexp.MustCompile(`(?s)://[^/@:]*:(.*)@`)
	passwordParam    = regexp.MustCompile(`(?i)((?:password|pass|pwd)=)[^&\s]*`)
)

// secrets are the passwords of the URLs in use, blanked out of everything
// distlock prints, whatever form they take in a message.
var secrets []string

// redact blanks out passwords in s: those in URL form, and those of the
// URLs given to distlock.
func redact(s string) string {
	s = userinfoPassword.ReplaceAllString(s, "${1}xxxxx@")
	s = passwordParam.ReplaceAllString(s, "${1}xxxxx")
	for _, p := range secrets {
		if len(p) >= 3 { // shorter ones would blank out ordinary text
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	return s
}

func redactAll(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = redact(u)
	}
	return out
}

// remember adds the password of a URL, if any, to the secrets, even when
// the URL does not parse as a whole.
func remember(raw string) {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			secrets = append(secrets, p)
		}
		return
	}
	// Up to the last '@': a password that makes the URL invalid (a space,
	// a raw '@') is still a password.
	if m := rawPassword.FindStringSubmatch(raw); m != nil && m[1] != "" {
		secrets = append(secrets, m[1], url.QueryEscape(m[1]))
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

// dial makes a client for each URL. It checks the URLs only; nothing is
// sent to Redis yet.
func dial(urls []string) ([]node, error) {
	for _, raw := range urls {
		remember(raw)
	}
	nodes := make([]node, 0, len(urls))
	for _, raw := range urls {
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
	lk := distlock.New(nodes[0].client, distlock.WithKeyPrefix(prefix))
	return &backend{nodes: nodes, locker: lk, what: nodes[0].name, prefix: prefix}, nil
}

func (b *backend) Close() { closeNodes(b.nodes) }
