package distlock

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
)

// TestNewNotifiersPublish: an owner publishes with SPUBLISH, and its
// notifiers listen on shards, only when every client is a Redis Cluster
// client; one plain client among them (a Redlock of mixed nodes) makes
// every node PUBLISH and SUBSCRIBE, so that each notifier listens the way
// its node is published to. No client here connects anywhere.
func TestNewNotifiersPublish(t *testing.T) {
	cluster := func() redis.UniversalClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	plain := func() redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	tests := []struct {
		name    string
		give    []redis.UniversalClient
		want    string
		sharded bool
	}{
		{"one plain client", []redis.UniversalClient{plain()}, publishPlain, false},
		{"one cluster client", []redis.UniversalClient{cluster()}, publishSharded, true},
		{"three cluster clients", []redis.UniversalClient{cluster(), cluster(), cluster()}, publishSharded, true},
		{"mixed", []redis.UniversalClient{cluster(), plain(), cluster()}, publishPlain, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, publish := newNotifiers(tt.give, func(string, string) {}, func() {})
			assert.Equal(t, tt.want, publish)
			assert.Len(t, ns, len(tt.give))
			for _, n := range ns {
				assert.Equal(t, tt.sharded, n.cluster != nil)
			}
		})
	}
}
