-- Acquire a lock, optionally re-attaching with the holder's own token and
-- optionally drawing a fencing token.
-- KEYS[1] lock key, KEYS[2] fence counter (same hash slot)
-- ARGV[1] the value to store: the token, NUL "owner:" and the owner label
-- (owner.go), ARGV[2] TTL in ms, ARGV[3] "1" to draw a fence, ARGV[4] the
-- shared marker (shared.go)
-- Returns {1, fence} when obtained (fence 0 without fencing),
-- {0, pttl} when the key is held by another token, {2, pttl} when it is
-- held by shared leases (readers or permits: the key holds the marker).
-- The key is also taken when it holds the same token under another owner
-- label (a restarted process re-attaching with WithToken), or with none (a
-- value stored before labels): the token part of a value is what comes
-- before its last NUL, when "owner:" follows that NUL, else all of it.
-- The fence is drawn before the lock is set: scripts are not rolled back,
-- so a failing INCR (a counter that is not an integer) must leave no lock.
local function token(v)
  for i = #v, 1, -1 do
    if string.byte(v, i) == 0 then
      if string.sub(v, i + 1, i + 6) == 'owner:' then
        return string.sub(v, 1, i - 1)
      end
      return v
    end
  end
  return v
end
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] or token(cur) == token(ARGV[1]) then
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
