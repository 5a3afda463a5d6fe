-- Extend a shared lease, only while the key holds the shared marker and
-- the lease has not expired; the marker and the lease set then live as
-- long as the longest lease.
-- KEYS[1] lock key, KEYS[2] lease set (same hash slot)
-- ARGV[1] shared marker, ARGV[2] token, ARGV[3] new TTL in ms
-- Returns 1 when extended, 0 when the lease is not held (expired,
-- released, or the key was deleted or is held exclusively).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = redis.call('ZSCORE', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if exp == false or tonumber(exp) <= now then
  return 0
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1
