package distlock

import "strings"

// Key layout. For a lock key K under prefix P the library writes
//
//	P{K}        the lock: a string holding the holder's token and owner
//	            label (owner.go), or Once's done marker
//	P{K}:fence  the fencing counter (never expires)
//	P{K}:shared, P{K}:writers  shared leases and waiting writers (shared.go)
//	P{K}:forced:<SHA-1 of a lock's value>
//	            left by a force release for that value's holder (admin.go,
//	            force_release.lua); expires with the lock's TTL
//
// The marker's name depends on the value, which only the scripts see: they
// build it from KEYS[1] instead of taking it as a key argument. It shares
// the lock key's hash tag, so it lands in the same slot, which Redis
// Cluster requires of a script's keys.
//
// The braces make K the Redis Cluster hash tag, so every key of one lock
// lands in the same slot. Braces and '%' inside P and K are percent-escaped
// so that the first '{' of the key is always the library's own and the tag
// is never empty, whatever bytes K and P hold.

var keyEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

func escapeKeyPart(s string) string {
	if !strings.ContainsAny(s, "%{}") {
		return s
	}
	return keyEscaper.Replace(s)
}

// lockKey is the Redis key of the lock named key under prefix.
func lockKey(prefix, key string) string {
	return escapeKeyPart(prefix) + "{" + escapeKeyPart(key) + "}"
}

// fenceKey is the Redis key of the fencing counter of the lock stored at
// the Redis key lk (as returned by lockKey).
func fenceKey(lk string) string { return lk + ":fence" }
