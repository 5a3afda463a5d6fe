-- Prepended (by scripts.go) to every script that wakes blocked callers, so
-- that how a wake-up is published is written once.
-- publishOn(ch, msg, how) publishes msg on channel ch: with SPUBLISH when
-- how is 'SPUBLISH' (a Redis Cluster, so that only the key's shard sees
-- it), falling back to PUBLISH where the server has no SPUBLISH (before
-- 7.0); with PUBLISH otherwise. It never raises: it returns the server's
-- reply (the number of subscribers that heard it) or the error table.
local function publishOn(ch, msg, how)
  local r
  if how == 'SPUBLISH' then
    r = redis.pcall('SPUBLISH', ch, msg)
    if type(r) == 'table' and r.err and string.find(r.err, 'Unknown Redis command', 1, true) then
      r = redis.pcall('PUBLISH', ch, msg)
    end
  else
    r = redis.pcall('PUBLISH', ch, msg)
  end
  return r
end

-- wake(key, how) publishes the wake-up of the lock at key on the channel
-- key .. ':wake' (see publishOn). It returns false when the server refused
-- the publish (a user without permission on the channel), true otherwise.
local function wake(key, how)
  local r = publishOn(key .. ':wake', '', how)
  return not (type(r) == 'table' and r.err)
end

