package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distlock/distlock"
)

// redlockReadTimeout is the read and write timeout of Redlock node clients
// whose URL does not set one: a slow node must not hold up the commands
// queued behind it on its client for long.
const redlockReadTimeout = time.Second

// connectRedlock makes a Redlock over three or more independent nodes.
func connectRedlock(urls []string, prefix string, nodeTimeout time.Duration) (*backend, error) {
	nodes, err := dial(urls)
	if err != nil {
		return nil, err
	}
	clients := make([]redis.UniversalClient, len(nodes))
	names := make([]string, len(nodes))
	for i, n := range nodes {
		o := n.client.Options()
		if o.ReadTimeout == 0 && o.WriteTimeout == 0 {
			o.ReadTimeout, o.WriteTimeout = redlockReadTimeout, redlockReadTimeout
			_ = n.client.Close()
			nodes[i].client = redis.NewClient(o)
		}
		clients[i] = nodes[i].client
		names[i] = n.name
	}
	opts := []distlock.Option{distlock.WithKeyPrefix(prefix)}
	if nodeTimeout > 0 {
		opts = append(opts, distlock.WithNodeTimeout(nodeTimeout))
	}
	return &backend{
		nodes:  nodes,
		locker: distlock.NewRedlock(clients, opts...),
		what:   fmt.Sprintf("Redlock over %d nodes (%s)", len(nodes), strings.Join(names, ", ")),
		prefix: prefix,
	}, nil
}
