-- Release a lock only if it still carries the caller's token, and wake the
-- callers blocked on it.
-- KEYS[1] lock key; ARGV[1] token
-- Returns 1 when deleted, 0 when the lock is not held by this token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[1] .. ':wake', '')
  return 1
end
return 0
