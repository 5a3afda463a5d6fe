package distlock

// Inflight returns how many commands of lk are in flight, so that a test
// can tell which path (plain or pipelined) the next command takes.
func Inflight(lk *Locker) int32 { return lk.conns.inflight.Load() }
