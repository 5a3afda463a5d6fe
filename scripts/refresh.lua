-- Extend a lock only if it still carries the caller's value (token and
-- owner label).
-- KEYS[1] lock key; ARGV[1] the stored value, ARGV[2] new TTL in ms
-- Returns 1 when extended, 0 when the lock is not held by this value, 3
-- when it is not because an operator force-released it (force_release.lua
-- left a marker for this value; looked for only then).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('GET', KEYS[1] .. ':forced:' .. redis.sha1hex(ARGV[1])) then
  return 3
end
return 0
