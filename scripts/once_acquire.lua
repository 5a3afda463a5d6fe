-- Start Once's work on a key: take the lock unless it is held by someone
-- else or the work is already done within its window.
-- KEYS[1] lock key
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] the prefix of a done marker
-- Returns {1, 0} when obtained, {0, pttl} when held by another token,
-- {2, pttl} when the key holds a done marker (pttl: what is left of the
-- window).
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, 0}
end
if string.sub(cur, 1, #ARGV[3]) == ARGV[3] then
  return {2, redis.call('PTTL', KEYS[1])}
end
return {0, redis.call('PTTL', KEYS[1])}
