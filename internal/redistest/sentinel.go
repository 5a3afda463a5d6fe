package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel settings used by [StartSentinel].
const (
	// SentinelMasterName is the name the sentinels monitor.
	SentinelMasterName = "mymaster"
	// sentinelQuorum of the 3 sentinels must agree the primary is down.
	sentinelQuorum = 2
	// sentinelDownAfter is down-after-milliseconds.
	sentinelDownAfter = 1000
	// sentinelFailoverTimeout is failover-timeout in milliseconds.
	sentinelFailoverTimeout = 3000
	// sentinelTimeout bounds each wait in StartSentinel and Failover.
	sentinelTimeout = 15 * time.Second
)

// replicationArgs are given to the primary and the replica (either may
// become master).
var replicationArgs = []string{"--repl-diskless-sync-delay", "0"}

// Sentinel is a primary, one replica and three sentinels on 127.0.0.1,
// started by [StartSentinel]. All five are ordinary [Server] values (a
// sentinel's Exec runs SENTINEL commands).
type Sentinel struct {
	// Primary is the node the sentinels currently report as master and
	// Replica the other one. Failover swaps them; after an automatic
	// failover (e.g. the primary was killed) call [Sentinel.Sync].
	Primary, Replica *Server
	// Sentinels are the three sentinel processes.
	Sentinels []*Server
	// MasterName is the monitored master name, "mymaster".
	MasterName string
}

// StartSentinel starts a primary, a replica of it (--replicaof; both with
// --repl-diskless-sync-delay 0 so a full sync starts at once), and three
// sentinels (redis-server CONFIG --sentinel, with a generated config in their
// temp dirs) that monitor the primary as "mymaster" with quorum 2,
// down-after-milliseconds 1000 and failover-timeout 3000. It waits until the
// replica is in sync and every sentinel sees the replica and the two other
// sentinels, so that a failover can start at once. Everything is stopped in
// t.Cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{MasterName: SentinelMasterName}
	// Redis 7 waits 5s (repl-diskless-sync-delay) before a full sync in case
	// more replicas show up; one replica is all there will be.
	s.Primary = Start(t, replicationArgs...)
	s.Replica = Start(t, slices.Concat(replicationArgs,
		[]string{"--replicaof", loopback, strconv.Itoa(s.Primary.Port())})...)

	cfgs := make([]config, 3)
	for i := range cfgs {
		cfgs[i] = config{what: "sentinel", argv: s.sentinelArgv}
	}
	s.Sentinels = startAll(t, cfgs)
	s.waitReady(t)
	return s
}

// sentinelArgv writes sentinel.conf for port into dir; sentinel rewrites
// that file itself later, and Restart reuses it.
func (s *Sentinel) sentinelArgv(port int, dir string) ([]string, error) {
	conf := fmt.Sprintf(`port %d
bind %s
protected-mode no
dir %q
sentinel monitor %s %s %d %d
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
sentinel parallel-syncs %s 1
`, port, loopback, dir,
		s.MasterName, loopback, s.Primary.Port(), sentinelQuorum,
		s.MasterName, sentinelDownAfter,
		s.MasterName, sentinelFailoverTimeout,
		s.MasterName)
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return []string{path, "--sentinel"}, nil
}

// waitReady waits until the replica is in sync with the primary and every
// sentinel reports the primary as master with one healthy replica and two
// other sentinels.
func (s *Sentinel) waitReady(t testing.TB) {
	t.Helper()
	s.waitFor(t, "replica in sync and seen by all sentinels", func() error {
		if err := replicaInSync(s.Replica, s.Primary); err != nil {
			return err
		}
		for _, sn := range s.Sentinels {
			if err := s.sentinelSees(sn, s.Primary, s.Replica); err != nil {
				return err
			}
		}
		return nil
	})
}

// waitFor polls cond every 50ms until it returns nil, failing the test after
// sentinelTimeout with cond's last error.
func (s *Sentinel) waitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(sentinelTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel: %s: not after %v: %v", what, sentinelTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replicaInSync checks that replica reports primary as its master (any
// master when primary is nil, e.g. one reached through a proxy) with the
// link up.
func replicaInSync(replica, primary *Server) error {
	v, err := replica.do("INFO", "replication")
	if err != nil {
		return fmt.Errorf("replica %s: %w", replica.Addr(), err)
	}
	info, _ := v.(string)
	if role := infoField(info, "role"); role != "slave" {
		return fmt.Errorf("replica %s: role %q", replica.Addr(), role)
	}
	if port := infoField(info, "master_port"); primary != nil && port != strconv.Itoa(primary.Port()) {
		return fmt.Errorf("replica %s: master_port %s, want %d", replica.Addr(), port, primary.Port())
	}
	if link := infoField(info, "master_link_status"); link != "up" {
		return fmt.Errorf("replica %s: master_link_status %q", replica.Addr(), link)
	}
	return nil
}

// sentinelSees checks that sentinel sn reports primary as master, knows
// replica as a replica that is neither down nor disconnected, and knows the
// other sentinels.
func (s *Sentinel) sentinelSees(sn, primary, replica *Server) error {
	addr, err := masterAddr(sn, s.MasterName)
	if err != nil {
		return err
	}
	if addr != primary.Addr() {
		return fmt.Errorf("sentinel %s: master %s, want %s", sn.Addr(), addr, primary.Addr())
	}
	v, err := sn.do("SENTINEL", "MASTER", s.MasterName)
	if err != nil {
		return fmt.Errorf("sentinel %s: %w", sn.Addr(), err)
	}
	m := pairs(v)
	if m["flags"] != "master" || m["num-other-sentinels"] != strconv.Itoa(len(s.Sentinels)-1) {
		return fmt.Errorf("sentinel %s: master flags %q, %s other sentinels",
			sn.Addr(), m["flags"], m["num-other-sentinels"])
	}
	v, err = sn.do("SENTINEL", "REPLICAS", s.MasterName)
	if err != nil {
		return fmt.Errorf("sentinel %s: %w", sn.Addr(), err)
	}
	list, _ := v.([]any)
	for _, r := range list {
		m := pairs(r)
		if net.JoinHostPort(m["ip"], m["port"]) != replica.Addr() {
			continue
		}
		// Only the flags: the sentinel's copy of the replica's
		// master-link-status may be up to 10s old (its INFO period), and
		// the caller checks the replica's own INFO instead.
		if m["flags"] != "slave" {
			return fmt.Errorf("sentinel %s: replica %s flags %q",
				sn.Addr(), replica.Addr(), m["flags"])
		}
		return nil
	}
	return fmt.Errorf("sentinel %s: does not know replica %s yet", sn.Addr(), replica.Addr())
}

// masterAddr asks one sentinel for the master's address.
func masterAddr(sn *Server, name string) (string, error) {
	v, err := sn.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", sn.Addr(), err)
	}
	hp, _ := v.([]any)
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s: GET-MASTER-ADDR-BY-NAME: %v", sn.Addr(), v)
	}
	host, _ := hp[0].(string)
	port, _ := hp[1].(string)
	return net.JoinHostPort(host, port), nil
}

// pairs turns a RESP2 flat key/value array into a map.
func pairs(v any) map[string]string {
	list, _ := v.([]any)
	m := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		val, _ := list[i+1].(string)
		m[k] = val
	}
	return m
}

// MasterAddr returns the master address reported by the first running
// sentinel.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	var errs []string
	for _, sn := range s.Sentinels {
		if sn.Pid() == 0 {
			continue
		}
		addr, err := masterAddr(sn, s.MasterName)
		if err == nil {
			return addr
		}
		errs = append(errs, err.Error())
	}
	t.Fatalf("redistest: no sentinel reports a master: %s", strings.Join(errs, "; "))
	return ""
}

// Sync sets Primary and Replica from what the sentinels report, e.g. after
// an automatic failover. It fails the test if the reported master is
// neither of them.
func (s *Sentinel) Sync(t testing.TB) {
	t.Helper()
	switch addr := s.MasterAddr(t); addr {
	case s.Primary.Addr():
	case s.Replica.Addr():
		s.Primary, s.Replica = s.Replica, s.Primary
	default:
		t.Fatalf("redistest: sentinels report unknown master %s", addr)
	}
}

// WaitReplica waits up to 15s until Replica reports Primary as its master
// with the replication link up, e.g. for the old primary after
// [Sentinel.Failover], which the sentinels turn into a replica about 10s
// after the failover.
func (s *Sentinel) WaitReplica(t testing.TB) {
	t.Helper()
	s.waitFor(t, "replica in sync", func() error {
		return replicaInSync(s.Replica, s.Primary)
	})
}

// FailoverClient returns a new go-redis failover client (NewFailoverClient)
// for MasterName through all sentinels, closed in t.Cleanup. Defaults, which
// opts may change: DialTimeout, ReadTimeout, WriteTimeout 1s
// ([DefaultTimeout]), MaxRetries -1 (no retries), DialerRetries 1.
func (s *Sentinel) FailoverClient(t testing.TB, opts ...func(*redis.FailoverOptions)) *redis.Client {
	t.Helper()
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr()
	}
	o := &redis.FailoverOptions{
		MasterName:    s.MasterName,
		SentinelAddrs: addrs,
		DialTimeout:   DefaultTimeout,
		ReadTimeout:   DefaultTimeout,
		WriteTimeout:  DefaultTimeout,
		MaxRetries:    -1,
		DialerRetries: 1,
	}
	for _, opt := range opts {
		opt(o)
	}
	c := redis.NewFailoverClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Failover forces a failover with SENTINEL FAILOVER and waits until every
// running sentinel reports the former Replica as master and that node
// reports role:master; then it swaps Primary and Replica.
//
// Before asking, it waits until the replica is in sync and known to all
// sentinels (a sentinel refuses with NOGOODSLAVE otherwise). Failover does
// not wait for the old primary to become a replica: the sentinels convert it
// on their own about 10s later (see [Sentinel.WaitReplica]); until then it
// is a second master that still accepts writes from clients that have not
// switched (a real split-brain window). A second Failover waits for the
// conversion first.
func (s *Sentinel) Failover(t testing.TB) {
	t.Helper()
	oldPrimary, next := s.Primary, s.Replica
	s.waitFor(t, "replica ready for failover", func() error {
		if err := replicaInSync(next, oldPrimary); err != nil {
			return err
		}
		for _, sn := range s.Sentinels {
			if sn.Pid() == 0 {
				continue
			}
			if err := s.sentinelSees(sn, oldPrimary, next); err != nil {
				return err
			}
		}
		return nil
	})

	s.waitFor(t, "SENTINEL FAILOVER accepted", func() error {
		var errs []string
		for _, sn := range s.Sentinels {
			if sn.Pid() == 0 {
				continue
			}
			_, err := sn.do("SENTINEL", "FAILOVER", s.MasterName)
			if err != nil && !strings.HasPrefix(err.Error(), "INPROG") {
				errs = append(errs, fmt.Sprintf("%s: %v", sn.Addr(), err))
				continue
			}
			return nil
		}
		if len(errs) == 0 {
			return errors.New("no running sentinel")
		}
		return errors.New(strings.Join(errs, "; "))
	})

	s.waitFor(t, "failover to "+next.Addr(), func() error {
		for _, sn := range s.Sentinels {
			if sn.Pid() == 0 {
				continue
			}
			addr, err := masterAddr(sn, s.MasterName)
			if err != nil {
				return err
			}
			if addr != next.Addr() {
				return fmt.Errorf("sentinel %s: master %s", sn.Addr(), addr)
			}
		}
		v, err := next.do("INFO", "replication")
		if err != nil {
			return err
		}
		info, _ := v.(string)
		if role := infoField(info, "role"); role != "master" {
			return fmt.Errorf("%s: role %q", next.Addr(), role)
		}
		return nil
	})
	s.Primary, s.Replica = next, oldPrimary
}
