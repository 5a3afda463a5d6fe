package distlock

// Inflight returns how many commands of lk are in flight, so that a test
// can tell which path (plain or pipelined) the next command takes.
func Inflight(lk *Locker) int32 { return lk.conns.inflight.Load() }

// Parked reports whether a caller of lk blocked on the lock named key
// (default prefix) is parked, open to a hand-over.
func Parked(lk *Locker, key string) bool {
	rk := lockKey(defaultOptions().prefix, key)
	lk.waiters.mu.Lock()
	defer lk.waiters.mu.Unlock()
	rm := lk.waiters.rooms[rk]
	return rm != nil && rm.parked != nil
}
