package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distlock/distlock"
)

// connectRedlock makes a Redlock over three or more independent nodes.
func connectRedlock(urls []string, prefix string, nodeTimeout time.Duration) (*backend, error) {
	nodes, err := dial(urls)
	if err != nil {
		return nil, err
	}
	clients := make([]redis.UniversalClient, len(nodes))
	names := make([]string, len(nodes))
	for i, n := range nodes {
		clients[i] = n.client
		names[i] = n.name
	}
	// No autopipelining (see connect).
	opts := []distlock.Option{distlock.WithKeyPrefix(prefix), distlock.WithPipelining(false)}
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
