package distlock

// KeySlot exposes the tests' Redis Cluster slot function (fuzz_test.go) to
// the external test package.
var KeySlot = keySlot

// ResubscribeBound is how soon a sharded notifier has subscribed again the
// channels of a slot that moved, once the Cluster has settled (notify.go).
const ResubscribeBound = resubscribeBound

// StoredValue returns what the lock key of l holds in Redis while l holds
// it: its token and owner label (owner.go).
func StoredValue(l *Lock) string { return l.token }
