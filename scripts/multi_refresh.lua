-- Extend every key of a multi-key lock, only if every one still carries
-- the caller's token: a multi-key lock is held as a whole or not at all.
-- KEYS[1..n] lock keys (one hash slot); ARGV[1] token, ARGV[2] new TTL in
-- ms, ARGV[3] "1" to give back the keys this token still holds when the
-- lock is lost (deleted, publishing their wake-ups), ARGV[4] how to
-- publish them (see wake.lua)
-- Returns 1 when every key was extended. Otherwise nothing is extended and
-- it returns 2 when some keys are gone and none is held by another token
-- (a Redlock node that lost them: the caller may take them again there),
-- or 0 when another token holds one of them.
local gone, other = 0, 0
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur == false then
    gone = gone + 1
  elseif cur ~= ARGV[1] then
    other = other + 1
  end
end
if gone == 0 and other == 0 then
  for i = 1, #KEYS do
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
  return 1
end
if ARGV[3] == '1' then
  for i = 1, #KEYS do
    if redis.call('GET', KEYS[i]) == ARGV[1] then
      redis.call('DEL', KEYS[i])
      wake(KEYS[i], ARGV[4])
    end
  end
end
if other > 0 then
  return 0
end
return 2
