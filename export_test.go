package distlock

// KeySlot exposes the tests' Redis Cluster slot function (fuzz_test.go) to
// the external test package.
var KeySlot = keySlot

// ResubscribeBound is how soon a sharded notifier has subscribed again the
// channels of a slot that moved, once the Cluster has settled (notify.go).
const ResubscribeBound = resubscribeBound
