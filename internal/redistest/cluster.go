package redistest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots in a Redis Cluster.
const clusterSlots = 16384

// clusterTimeout bounds how long StartCluster waits for cluster_state:ok.
const clusterTimeout = 15 * time.Second

// Cluster is a Redis Cluster of masters without replicas on 127.0.0.1,
// started by [StartCluster]. Each node is an ordinary [Server] (so it can be
// paused, killed, ...); its cluster bus listens on Port()+10000. A node
// brought back with Restart keeps its identity and slots (nodes.conf in its
// directory) but not its data; [Cluster.WaitOK] waits for it to rejoin.
// With no replicas, a node that is down makes the other nodes report
// cluster_state:fail about 3s later (cluster-node-timeout 2s plus gossip).
type Cluster struct {
	// Nodes are the masters; Nodes[i] owns the i-th equal share of the
	// 16384 slots.
	Nodes []*Server
	// Replicas, from StartClusterWithReplicas, are one replica per master:
	// Replicas[i] replicates Nodes[i]. Failover swaps them.
	Replicas []*Server
	// replicating is set once the replicas were told to replicate: WaitOK
	// then also waits for them to be in sync.
	replicating bool
	// failedOver is when Failover last promoted Replicas[i]'s shard.
	failedOver map[int]time.Time
	// moved records the slots MoveSlot gave to another shard: slot -> shard.
	moved map[int]int
}

// failoverSpacing is how long Failover leaves between two failovers of one
// shard: a master does not vote for a second failover of the same shard
// within twice the node timeout (2s here), and a manual failover asked for
// sooner times out.
const failoverSpacing = 5 * time.Second

// StartCluster starts masters cluster nodes in parallel, each with the
// standard arguments of [Start] plus
//
//	--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
//
// then assigns the slots in equal contiguous ranges (CLUSTER ADDSLOTS), sets
// distinct config epochs, joins the nodes with CLUSTER MEET and waits up to
// 15s until every node reports cluster_state:ok and knows all the others.
// redis-cli is not needed. Nodes are stopped in t.Cleanup.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return startCluster(t, masters, false, nil)
}

// StartClusterWithReplicas is StartCluster with one replica per master
// (CLUSTER REPLICATE): Replicas[i] replicates Nodes[i]. It also waits
// until every replica is in sync.
func StartClusterWithReplicas(t testing.TB, masters int) *Cluster {
	t.Helper()
	return startCluster(t, masters, true, nil)
}

// StartClusterArgs is StartCluster with args appended to every node's
// command line (later arguments win), e.g. "--rename-command", "SPUBLISH",
// "" for a server without sharded pub/sub.
func StartClusterArgs(t testing.TB, masters int, args ...string) *Cluster {
	t.Helper()
	return startCluster(t, masters, false, args)
}

func startCluster(t testing.TB, masters int, replicas bool, extra []string) *Cluster {
	t.Helper()
	if masters < 1 {
		t.Fatalf("redistest: StartCluster(%d): need at least one master", masters)
	}
	n := masters
	if replicas {
		n *= 2
	}
	cfgs := make([]config, n)
	for i := range cfgs {
		cfgs[i] = config{
			what:    "cluster node",
			cluster: true,
			argv: func(port int, dir string) ([]string, error) {
				args := append(standardArgs(port, dir),
					"--cluster-enabled", "yes",
					"--cluster-config-file", "nodes.conf",
					"--cluster-node-timeout", "2000",
				)
				return append(args, extra...), nil
			},
		}
	}
	all := startAll(t, cfgs)
	c := &Cluster{Nodes: all[:masters]}
	if replicas {
		c.Replicas = all[masters:]
	}

	for i, n := range c.Nodes {
		first, last := i*clusterSlots/masters, (i+1)*clusterSlots/masters-1
		args := []any{"CLUSTER", "ADDSLOTS"}
		for slot := first; slot <= last; slot++ {
			args = append(args, slot)
		}
		n.Exec(t, args...)
		n.Exec(t, "CLUSTER", "SET-CONFIG-EPOCH", i+1)
	}
	for _, n := range all[1:] {
		c.Nodes[0].Exec(t, "CLUSTER", "MEET", loopback, n.Port())
	}
	c.WaitOK(t)
	for i, r := range c.Replicas {
		id, _ := c.Nodes[i].Exec(t, "CLUSTER", "MYID").(string)
		r.Exec(t, "CLUSTER", "REPLICATE", id)
	}
	c.replicating = len(c.Replicas) > 0
	c.WaitOK(t)
	return c
}

// Failover runs CLUSTER FAILOVER (a manual failover: the replica first
// catches up with its master) on Replicas[i], waits until it is a master
// that every node sees with the cluster ok and its old master is its
// replica in sync, then swaps Nodes[i] and Replicas[i]. A second failover
// of the same shard waits until 5s after the first (Redis refuses it
// sooner). With force, it
// runs CLUSTER FAILOVER FORCE: no catching up with the master (the old
// master may take longer than WaitOK allows to become a replica).
func (c *Cluster) Failover(t testing.TB, i int, force bool) {
	t.Helper()
	args := []any{"CLUSTER", "FAILOVER"}
	if force {
		args = append(args, "FORCE")
	}
	if last, ok := c.failedOver[i]; ok {
		time.Sleep(time.Until(last.Add(failoverSpacing)))
	}
	// A manual failover can time out (the master did not answer in time
	// on a loaded machine): ask again, up to three times.
	next := c.Replicas[i]
	promoted := false
	for try := 0; try < 3 && !promoted; try++ {
		next.Exec(t, args...)
		deadline := time.Now().Add(clusterTimeout / 3)
		for !promoted && time.Now().Before(deadline) {
			promoted = next.Info(t, "replication", "role") == "master"
			if !promoted {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	if !promoted {
		t.Fatalf("redistest: %v on %s: still a replica", args, next.Addr())
	}
	if c.failedOver == nil {
		c.failedOver = map[int]time.Time{}
	}
	c.failedOver[i] = time.Now()
	c.Nodes[i], c.Replicas[i] = next, c.Nodes[i]
	c.WaitOK(t)
}

// KillMaster kills Nodes[i] (SIGKILL: no goodbye to its clients or to the
// cluster), waits until its replica has promoted itself (after the
// cluster node timeout, 2s, and an election) and every running node
// reports the cluster ok, then swaps Nodes[i] and Replicas[i]: the dead
// node is left as Replicas[i], stopped (Restart brings it back as a
// replica of the new master).
func (c *Cluster) KillMaster(t testing.TB, i int) {
	t.Helper()
	c.Nodes[i].Kill(t)
	next := c.Replicas[i]
	deadline := time.Now().Add(clusterTimeout)
	for next.Info(t, "replication", "role") != "master" {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s not promoted %v after its master was killed", next.Addr(), clusterTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Nodes[i], c.Replicas[i] = next, c.Nodes[i]
	c.WaitOK(t)
}

// WaitOK waits up to 15s until every running node reports cluster_state:ok,
// knows all len(Nodes) nodes and sees all 16384 slots assigned, and fails
// the test otherwise.
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(clusterTimeout)
	for {
		err := c.check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster not ready after %v: %v", clusterTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) check() error {
	want := strconv.Itoa(len(c.Nodes) + len(c.Replicas))
	for _, n := range append(slices.Clone(c.Nodes), c.Replicas...) {
		if n.Pid() == 0 {
			continue
		}
		v, err := n.do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", n.Addr(), err)
		}
		info, _ := v.(string)
		for field, value := range map[string]string{
			"cluster_state":          "ok",
			"cluster_known_nodes":    want,
			"cluster_slots_assigned": strconv.Itoa(clusterSlots),
		} {
			if got := infoField(info, field); got != value {
				return fmt.Errorf("%s: %s:%s, want %s", n.Addr(), field, got, value)
			}
		}
	}
	for i, r := range c.Replicas {
		if !c.replicating || r.Pid() == 0 || c.Nodes[i].Pid() == 0 {
			continue
		}
		if err := replicaInSync(r, c.Nodes[i]); err != nil {
			return err
		}
		v, err := c.Nodes[i].do("INFO", "replication")
		if err != nil {
			return err
		}
		if info, _ := v.(string); infoField(info, "role") != "master" {
			return fmt.Errorf("%s: not a master yet", c.Nodes[i].Addr())
		}
	}
	return nil
}

// Addrs returns the "127.0.0.1:port" addresses of all nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a new go-redis cluster client seeded with all nodes, closed
// in t.Cleanup. Defaults, which opts may change: DialTimeout, ReadTimeout and
// WriteTimeout 1s ([DefaultTimeout]), DialerRetries 1, maintenance
// notifications disabled; MaxRetries and MaxRedirects keep the go-redis
// cluster defaults (no retries, 3 redirects).
func (c *Cluster) Client(t testing.TB, opts ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	o := &redis.ClusterOptions{
		Addrs:                    c.Addrs(),
		DialTimeout:              DefaultTimeout,
		ReadTimeout:              DefaultTimeout,
		WriteTimeout:             DefaultTimeout,
		DialerRetries:            1,
		MaintNotificationsConfig: disabledMaint(),
	}
	for _, opt := range opts {
		opt(o)
	}
	cc := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// String lists the node addresses, for log messages.
func (c *Cluster) String() string {
	return "cluster[" + strings.Join(c.Addrs(), " ") + "]"
}

// Shard returns i such that Nodes[i] owns slot: the i-th equal share of
// the slots as StartCluster assigned them, unless MoveSlot gave the slot to
// another shard since. Failover keeps the index (it swaps Nodes[i] and
// Replicas[i]).
func (c *Cluster) Shard(slot int) int {
	if to, ok := c.moved[slot]; ok {
		return to
	}
	return slot * len(c.Nodes) / clusterSlots
}

// MoveSlot moves one hash slot, with its keys, from the shard that owns it
// to shard to, as a reshard does: CLUSTER SETSLOT IMPORTING on the new
// master and MIGRATING on the old one, MIGRATE of the slot's keys, then
// CLUSTER SETSLOT NODE on the new master, the old one and the other
// masters (replicas learn it from their masters). It waits until the
// cluster is ok.
func (c *Cluster) MoveSlot(t testing.TB, slot, to int) {
	t.Helper()
	from := c.Shard(slot)
	if from == to {
		return
	}
	src, dst := c.Nodes[from], c.Nodes[to]
	srcID, _ := src.Exec(t, "CLUSTER", "MYID").(string)
	dstID, _ := dst.Exec(t, "CLUSTER", "MYID").(string)
	dst.Exec(t, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	src.Exec(t, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	for {
		keys, _ := src.Exec(t, "CLUSTER", "GETKEYSINSLOT", slot, 100).([]any)
		if len(keys) == 0 {
			break
		}
		args := append([]any{"MIGRATE", loopback, dst.Port(), "", 0, 5000, "KEYS"}, keys...)
		src.Exec(t, args...)
	}
	dst.Exec(t, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	src.Exec(t, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	for i, n := range c.Nodes {
		if i != from && i != to && n.Pid() != 0 {
			n.Exec(t, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
		}
	}
	if c.moved == nil {
		c.moved = map[int]int{}
	}
	c.moved[slot] = to
	c.WaitOK(t)
}

// ClusterInfo returns the value of one CLUSTER INFO field of s (e.g.
// "cluster_state", "cluster_stats_messages_publish_received"), or "" when
// the field is absent.
func (s *Server) ClusterInfo(t testing.TB, field string) string {
	t.Helper()
	v, _ := s.Exec(t, "CLUSTER", "INFO").(string)
	return infoField(v, field)
}
