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

// ScriptSource returns the source the library sends for scripts/<name>.lua:
// the file, with whatever scripts.go prepends to it (wake.lua for the
// scripts that wake waiters). "" for a name it does not know.
func ScriptSource(name string) string {
	s, ok := map[string]*script{
		"acquire":        acquireScript,
		"release":        releaseScript,
		"refresh":        refreshScript,
		"pttl":           pttlScript,
		"transfer":       transferScript,
		"refresh_heal":   refreshHealScript,
		"raise_fence":    raiseFenceScript,
		"once_acquire":   onceAcquireScript,
		"once_finish":    onceFinishScript,
		"force_release":  forceReleaseScript,
		"multi_acquire":  multiAcquireScript,
		"multi_release":  multiReleaseScript,
		"multi_refresh":  multiRefreshScript,
		"acquire_queued": acquireQueuedScript,
	}[name]
	if !ok {
		return ""
	}
	return s.src
}
