-- Raise the fencing counters of a multi-key lock to at least the fences
-- chosen for it, only while the caller still holds every key on this
-- node (Redlock's write-back of the highest fence of its quorum, per key;
-- see raise_fence.lua).
-- KEYS[1..n] lock keys, KEYS[n+1..2n] their fence counters, in the same
-- order (one hash slot)
-- ARGV[1] token, ARGV[1+i] the fence of KEYS[i]
-- Returns 1 when every counter is now at least its fence, 0 when some key
-- is not held by this token (nothing written).
local n = #KEYS / 2
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return 0
  end
end
for i = 1, n do
  local want = tonumber(ARGV[1 + i])
  local cur = tonumber(redis.call('GET', KEYS[n + i])) or 0
  if cur < want then
    redis.call('SET', KEYS[n + i], ARGV[1 + i])
  end
end
return 1
