package distlock

// KeySlot exposes the tests' Redis Cluster slot function (fuzz_test.go) to
// the external test package.
var KeySlot = keySlot
