-- Hand a lock over from its holder to a waiter of the same process, in one
-- step: the lock changes from the old token to the new one without ever
-- being free, and no wake-up is published (nobody else could take it).
-- KEYS[1] lock key, KEYS[2] fence counter (same hash slot)
-- ARGV[1] old token, ARGV[2] new token, ARGV[3] new TTL in ms,
-- ARGV[4] "1" to draw a fence for the new holder
-- Returns {1, fence} when handed over (fence 0 without fencing), {0, 0} when
-- the old token no longer holds the lock. The fence is drawn first, as in
-- acquire.lua.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, 0}
end
local fence = 0
if ARGV[4] == '1' then
  fence = redis.call('INCR', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1, fence}
