-- Acquire a lock, optionally re-attaching with the holder's own token and
-- optionally drawing a fencing token.
-- KEYS[1] lock key, KEYS[2] fence counter (same hash slot)
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] "1" to draw a fence,
-- ARGV[4] the shared marker (shared.go)
-- Returns {1, fence} when obtained (fence 0 without fencing),
-- {0, pttl} when the key is held by another token, {2, pttl} when it is
-- held by shared leases (readers or permits: the key holds the marker).
-- The fence is drawn before the lock is set: scripts are not rolled back,
-- so a failing INCR (a counter that is not an integer) must leave no lock.
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  local fence = 0
  if ARGV[3] == '1' then
    fence = redis.call('INCR', KEYS[2])
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, fence}
end
if cur == ARGV[4] then
  return {2, redis.call('PTTL', KEYS[1])}
end
return {0, redis.call('PTTL', KEYS[1])}
