-- Release a lock only if it still carries the caller's token, and wake the
-- callers blocked on it.
-- KEYS[1] lock key; ARGV[1] token
-- Returns 1 when deleted, 0 when the key does not exist (expired or
-- deleted), -1 when it is held by another token (taken over).
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[1] .. ':wake', '')
  return 1
end
if cur == false then
  return 0
end
return -1
