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
//	P{K}:q      the queue of callers waiting their turn (fair.go)
//	P{K}:q:ID   one place in it
//
// and publishes on P{K}:wake (a release, for callers that barge) and
// P{K}:wake:ID (a turn handed to place ID); on a Redis Cluster with
// SPUBLISH (sharded channels, in the lock's slot by the same hash tag).
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

// keySlot is the Redis Cluster hash slot of a key or shard channel: CRC16
// (XMODEM) of the hash tag (the bytes between the first '{' and the next
// '}', when not empty) or of the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// queueKey is the Redis key of the queue of the lock stored at lk.
func queueKey(lk string) string { return lk + ":q" }

// entryKey is the Redis key of place id in the queue of the lock at lk.
func entryKey(lk, id string) string { return queueKey(lk) + ":" + id }

// entryChannel is the channel on which place id is told that the lock at
// lk is now its.
func entryChannel(lk, id string) string { return wakeChannel(lk) + ":" + id }
