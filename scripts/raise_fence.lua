-- Raise a lock's fencing counter to at least a given fence, only while the
-- caller still holds the lock on this node. Redlock writes the fence it
-- chose (the highest INCR of its quorum) back to that quorum with it, so
-- that every later quorum, which overlaps this one, counts on from there.
-- KEYS[1] lock key, KEYS[2] fence counter (same hash slot)
-- ARGV[1] token, ARGV[2] fence
-- Returns 1 when the counter is now at least the fence, 0 when the lock is
-- not held by this token (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local want = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[2])) or 0
if cur < want then
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
