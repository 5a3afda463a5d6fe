-- Take a shared lease (a read lock, or a permit of a semaphore): the lock
-- key holds the shared marker and the lease is a member of the key's lease
-- set, scored with its expiry (ms, server time). A writer's SET NX fails on
-- the marker; the marker lives as long as the longest lease.
-- KEYS[1] lock key, KEYS[2] lease set, KEYS[3] waiting writers, KEYS[4]
-- fence counter (all in one hash slot)
-- ARGV[1] shared marker, ARGV[2] token, ARGV[3] TTL in ms, ARGV[4] limit
-- (0: no limit), ARGV[5] "1" to draw a fence, ARGV[6] the id of the
-- caller's Locker when it is a blocked caller, else "": that Locker's own
-- waiting writer queues behind it in the process (wait.go), so its claim
-- does not keep this caller out
-- Returns {1, fence} when obtained (fence 0 without fencing), {0, ms} when
-- not: ms is how long until what keeps it out can end by expiry (the
-- exclusive holder's PTTL, the first waiting writer's or the first lease's
-- expiry), -1 when unknown.
-- Leases and writers whose expiry has passed are dropped first; a lease
-- set without the marker (deleted by hand) counts for nothing. The fence is
-- drawn before anything is written, as in acquire.lua.
local cur = redis.call('GET', KEYS[1])
if cur ~= false and cur ~= ARGV[1] then
  return {0, redis.call('PTTL', KEYS[1])}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if cur == false then
  redis.call('DEL', KEYS[2])
else
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local w = redis.call('ZRANGE', KEYS[3], 0, 1, 'WITHSCORES')
if #w > 0 and w[1] == ARGV[6] then
  w = {w[3], w[4]}
end
if #w > 0 then
  return {0, tonumber(w[2]) - now}
end
local limit = tonumber(ARGV[4])
if limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
local fence = 0
if ARGV[5] == '1' then
  fence = redis.call('INCR', KEYS[4])
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', last[2])
redis.call('PEXPIREAT', KEYS[2], last[2])
return {1, fence}
