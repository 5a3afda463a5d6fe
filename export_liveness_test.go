package distlock

// Inflight returns how many commands of lk are in flight, so that a test
// can tell which path (plain or pipelined) the next command takes.
func Inflight(lk *Locker) int32 { return lk.conns.inflight.Load() }

// Parked reports whether a caller of lk blocked on the lock named key
// (default prefix) is parked, open to a hand-over (or, waiting its turn,
// to the turn).
func Parked(lk *Locker, key string) bool {
	rk := lockKey(defaultOptions().prefix, key)
	lk.waiters.mu.Lock()
	defer lk.waiters.mu.Unlock()
	for _, rm := range []*room{lk.waiters.rooms[rk], lk.waiters.fairRooms[rk]} {
		if rm != nil && rm.parked != nil {
			return true
		}
	}
	return false
}

// Waiting returns how many callers of lk wait their turn for the lock named
// key (default prefix) in lk's fair room.
func Waiting(lk *Locker, key string) int {
	rk := lockKey(defaultOptions().prefix, key)
	lk.waiters.mu.Lock()
	defer lk.waiters.mu.Unlock()
	if rm := lk.waiters.fairRooms[rk]; rm != nil {
		return len(rm.queue)
	}
	return 0
}
