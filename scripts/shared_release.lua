-- Release a shared lease, and wake the callers blocked on the key (a
-- permit is free, or the last reader left): the channel is the one
-- release.lua publishes on. The last lease out deletes the marker; else
-- the marker lives as long as the longest lease left.
-- KEYS[1] lock key, KEYS[2] lease set (same hash slot)
-- ARGV[1] shared marker, ARGV[2] token, ARGV[3] how to publish the wake-up
-- (see wake.lua)
-- Returns 1 when released, 2 when released but the wake-up could not be
-- published (no permission on the channel), 0 when the lease was not held
-- (expired or already released, or the key is gone), -1 when the key is
-- held exclusively (the lease is void).
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  if cur == false then
    return 0
  end
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = redis.call('ZSCORE', KEYS[2], ARGV[2])
if exp == false then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #last == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('PEXPIREAT', KEYS[1], last[2])
  redis.call('PEXPIREAT', KEYS[2], last[2])
end
local woke = wake(KEYS[1], ARGV[3])
if tonumber(exp) <= now then
  return 0
end
if not woke then
  return 2
end
return 1
