-- Record that Once's work succeeded: replace the holder's token with a done
-- marker that lives for the window, and wake the callers blocked on the
-- key. Running it again after it succeeded changes nothing and answers 1
-- again, so that a call whose reply was lost can be retried.
-- KEYS[1] lock key
-- ARGV[1] token, ARGV[2] done marker (made from the token), ARGV[3] window
-- in ms, ARGV[4] how to publish the wake-up, as in release.lua ('SPUBLISH'
-- on a Redis Cluster, anything else PUBLISH)
-- Returns 1 when the key now holds this holder's done marker, 0 when the
-- lock is not held by this token (nothing written).
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[2] then
  return 1
end
if cur ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local ch = KEYS[1] .. ':wake'
if ARGV[4] == 'SPUBLISH' then
  local woke = redis.pcall('SPUBLISH', ch, '')
  if type(woke) == 'table' and woke.err then
    if not string.find(woke.err, 'Unknown Redis command', 1, true) then
      return woke
    end
    redis.call('PUBLISH', ch, '')
  end
else
  redis.call('PUBLISH', ch, '')
end
return 1
