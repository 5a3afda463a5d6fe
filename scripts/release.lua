-- Release a lock only if it still carries the caller's value (token and
-- owner label), and wake the callers blocked on it.
-- KEYS[1] lock key; ARGV[1] the stored value, ARGV[2] how to publish the
-- wake-up (see wake.lua: 'SPUBLISH' on a Redis Cluster, anything else
-- PUBLISH).
-- Returns 1 when deleted, 2 when deleted but the wake-up could not be
-- published (a user without permission on the channel: the release stands,
-- waiters fall back to their capped re-checks), 0 when the key does not
-- exist (expired or deleted), -1 when it is held by another token (taken
-- over), -2 when an operator force-released it from this value
-- (force_release.lua left a marker; looked for only when not held).
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if not wake(KEYS[1], ARGV[2]) then
    return 2
  end
  return 1
end
if redis.call('GET', KEYS[1] .. ':forced:' .. redis.sha1hex(ARGV[1])) then
  return -2
end
if cur == false then
  return 0
end
return -1
