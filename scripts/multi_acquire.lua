-- Acquire every key of a multi-key lock at once, or none of them, and
-- optionally draw a fencing token per key.
-- KEYS[1..n] lock keys, KEYS[n+1..2n] their fence counters, in the same
-- order (every key in one hash slot)
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] "1" to draw a fence per key
-- Returns {1, fence_1, ..., fence_n} when every lock key was free (or
-- already held by this token: the same attempt sent again) and now holds
-- the token (fences 0 without fencing), {0, i, pttl} when KEYS[i] is held
-- by another token (nothing written).
-- Every key is checked before anything is written, and the fences are
-- drawn before any lock is set: scripts are not rolled back, so a failing
-- INCR (a counter that is not an integer) must leave no lock.
local n = #KEYS / 2
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  if cur ~= false and cur ~= ARGV[1] then
    return {0, i, redis.call('PTTL', KEYS[i])}
  end
end
local res = {1}
for i = 1, n do
  local fence = 0
  if ARGV[3] == '1' then
    fence = redis.call('INCR', KEYS[n + i])
  end
  res[i + 1] = fence
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return res
