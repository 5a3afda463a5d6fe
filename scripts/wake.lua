-- Prepended (by scripts.go) to every script that wakes blocked callers, so
-- that how a wake-up is published is written once.
-- wake(key, how) publishes the wake-up of the lock at key on the channel
-- key .. ':wake': with SPUBLISH when how is 'SPUBLISH' (a Redis Cluster, so
-- that only the key's shard sees it), falling back to PUBLISH where the
-- server has no SPUBLISH (before 7.0); with PUBLISH otherwise. It never
-- raises: it returns false when the server refused the publish (a user
-- without permission on the channel), true otherwise.
local function wake(key, how)
  local ch = key .. ':wake'
  local r
  if how == 'SPUBLISH' then
    r = redis.pcall('SPUBLISH', ch, '')
    if type(r) == 'table' and r.err and string.find(r.err, 'Unknown Redis command', 1, true) then
      r = redis.pcall('PUBLISH', ch, '')
    end
  else
    r = redis.pcall('PUBLISH', ch, '')
  end
  return not (type(r) == 'table' and r.err)
end

