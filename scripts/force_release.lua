-- Force release, for operators: delete a lock whoever holds it, leave a
-- marker from which its holder learns why at its next refresh or release,
-- and wake the callers blocked on it, as release.lua does.
-- KEYS[1] lock key
-- ARGV[1] the prefix of Once's done marker, ARGV[2] how long the marker
-- outlives the lock's remaining TTL, in ms, ARGV[3] the marker's TTL for a
-- lock without expiry, in ms, ARGV[4] how to publish the wake-up (see
-- wake.lua)
-- The marker is KEYS[1]:forced:<SHA-1 of the stored value>, in the lock's
-- hash slot (the lock key's hash tag), one per value so that only the
-- holder of that value (token and owner label) finds it; refresh.lua,
-- refresh_heal.lua and release.lua look for it only when the key is not
-- theirs. It lives as long as the lock would have, plus ARGV[2]: the holder
-- refreshes before then or loses the lock anyway. A done marker (Once) has
-- no holder to tell and gets none.
-- Returns 1 when deleted, 2 when deleted but the wake-up could not be
-- published (no permission on the channel), 0 when there is no such key,
-- -1 when the key is not a string (not a lock: left alone).
local cur = redis.pcall('GET', KEYS[1])
if cur == false then
  return 0
end
if type(cur) ~= 'string' then
  return -1
end
if string.sub(cur, 1, #ARGV[1]) ~= ARGV[1] then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    ttl = tonumber(ARGV[3])
  else
    ttl = ttl + tonumber(ARGV[2])
  end
  redis.call('SET', KEYS[1] .. ':forced:' .. redis.sha1hex(cur), '1', 'PX', ttl)
end
redis.call('DEL', KEYS[1])
if not wake(KEYS[1], ARGV[4]) then
  return 2
end
return 1
