-- Remaining TTL of a multi-key lock: the shortest of its keys, only if
-- every key still carries the caller's token.
-- KEYS[1..n] lock keys (one hash slot); ARGV[1] token
-- Returns the shortest PTTL in ms among the keys that expire (-1 when none
-- does), or -3 when some key is not held by this token.
local least = -1
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return -3
  end
  local ms = redis.call('PTTL', KEYS[i])
  if ms >= 0 and (least < 0 or ms < least) then
    least = ms
  end
end
return least
