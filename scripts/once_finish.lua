-- Record that Once's work succeeded: replace the holder's token with a done
-- marker that lives for the window, and wake the callers blocked on the
-- key. Running it again after it succeeded changes nothing and answers 1
-- again, so that a call whose reply was lost can be retried.
-- KEYS[1] lock key
-- ARGV[1] token, ARGV[2] done marker (made from the token), ARGV[3] window
-- in ms
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
redis.call('PUBLISH', KEYS[1] .. ':wake', '')
return 1
