-- Release a lock only if it still carries the caller's token, and wake the
-- callers blocked on it.
-- KEYS[1] lock key; ARGV[1] token, ARGV[2] how to publish the wake-up:
-- 'SPUBLISH' (a Redis Cluster: sharded pub/sub, so that only the key's
-- shard sees it; PUBLISH where the server has no SPUBLISH, before 7.0),
-- anything else PUBLISH.
-- Returns 1 when deleted, 2 when deleted but the wake-up could not be
-- published (a user without permission on the channel: the release stands,
-- waiters fall back to their capped re-checks), 0 when the key does not
-- exist (expired or deleted), -1 when it is held by another token (taken
-- over).
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  local ch = KEYS[1] .. ':wake'
  local woke
  if ARGV[2] == 'SPUBLISH' then
    woke = redis.pcall('SPUBLISH', ch, '')
    if type(woke) == 'table' and woke.err and string.find(woke.err, 'Unknown Redis command', 1, true) then
      woke = redis.pcall('PUBLISH', ch, '')
    end
  else
    woke = redis.pcall('PUBLISH', ch, '')
  end
  if type(woke) == 'table' and woke.err then
    return 2
  end
  return 1
end
if cur == false then
  return 0
end
return -1
