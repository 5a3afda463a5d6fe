-- Release the keys of a multi-key lock that still carry the caller's
-- token, and wake the callers blocked on each of them.
-- KEYS[1..n] lock keys (one hash slot); ARGV[1] token, ARGV[2] how to
-- publish the wake-ups (see wake.lua)
-- Returns {deleted, missing, other, unannounced}: how many keys were
-- deleted, did not exist (expired or deleted), were held by another token
-- (left alone), and were deleted but their wake-up could not be published
-- (a user without permission on the channel: the release stands).
local deleted, missing, other, unannounced = 0, 0, 0, 0
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur == ARGV[1] then
    redis.call('DEL', KEYS[i])
    deleted = deleted + 1
    if not wake(KEYS[i], ARGV[2]) then
      unannounced = unannounced + 1
    end
  elseif cur == false then
    missing = missing + 1
  else
    other = other + 1
  end
end
return {deleted, missing, other, unannounced}
