package distlockotel

import (
	"maps"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// maxSets bounds the attribute sets an Observer keeps (the SDK's default
// cardinality limit per instrument): past it, events of new sets are
// recorded under one set per instrument with otel.metric.overflow=true, as
// the SDK does. Only a WithKeyAttribute name of unbounded variety gets
// there.
const maxSets = 2000

// setCache holds the measurement of every attribute set used so far. It
// works as sync.Map does, without boxing the key on every look-up: read is
// a map that is never changed once stored, so that readers take no lock;
// sets added since are in dirty (under mu), which holds all of read too,
// and becomes read once as many look-ups missed read as dirty has
// entries. Each set is thus copied a bounded number of times on average.
type setCache struct {
	read   atomic.Pointer[map[setKey]*measurement]
	mu     sync.Mutex
	dirty  map[setKey]*measurement // nil, or read and the sets added since
	misses int
}

// get returns the measurement of k, made on first use; past maxSets sets,
// that of k's instrument's overflow set.
func (c *setCache) get(k setKey) *measurement {
	if read := c.read.Load(); read != nil {
		if m, ok := (*read)[k]; ok {
			return m
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	read := c.loadRead()
	if m, ok := read[k]; ok {
		return m
	}
	defer c.missLocked()
	if m, ok := c.dirty[k]; ok {
		return m
	}
	if c.dirty == nil {
		c.dirty = maps.Clone(read)
		if c.dirty == nil {
			c.dirty = map[setKey]*measurement{}
		}
	}
	if len(c.dirty) >= maxSets {
		k = setKey{inst: k.inst, overflow: true}
		if m, ok := c.dirty[k]; ok {
			return m
		}
	}
	set := attribute.NewSet(k.attributes()...)
	m := &measurement{
		rec: []metric.RecordOption{metric.WithAttributeSet(set)},
		obs: []metric.ObserveOption{metric.WithAttributeSet(set)},
	}
	c.dirty[k] = m
	return m
}

// missLocked counts a look-up that missed read, and makes dirty the new
// read once the misses have paid for the copy.
func (c *setCache) missLocked() {
	c.misses++
	if c.dirty != nil && c.misses >= len(c.dirty) {
		dirty := c.dirty
		c.read.Store(&dirty)
		c.dirty, c.misses = nil, 0
	}
}

func (c *setCache) loadRead() map[setKey]*measurement {
	if p := c.read.Load(); p != nil {
		return *p
	}
	return nil
}

// all returns every set: read, or dirty when there is one (it holds read
// too). The map must not be changed, and is not changed by others while
// it is used: a dirty map that is handed out is made read, and is copied
// before the next set is added.
func (c *setCache) all() map[setKey]*measurement {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirty != nil {
		dirty := c.dirty
		c.read.Store(&dirty)
		c.dirty, c.misses = nil, 0
	}
	return c.loadRead()
}
