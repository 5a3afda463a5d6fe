-- Remaining TTL of a lock, only if it still carries the caller's token.
-- KEYS[1] lock key; ARGV[1] token
-- Returns the PTTL in ms (-1 when the key has no expiry), or -3 when the lock
-- is not held by this token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
return -3
