-- Record that a writer (a plain, exclusive Obtain) waits for readers to
-- leave, so that no new shared lease is taken meanwhile: the writer is a
-- member of the key's set of waiting writers, scored with the expiry of
-- its claim (ms, server time): the readers' longest lease plus ARGV[3], so
-- that the writer's next attempt, which comes no later than the readers'
-- expiry, renews it, and a writer that died stops holding readers back.
-- KEYS[1] lock key, KEYS[2] waiting writers (same hash slot)
-- ARGV[1] shared marker, ARGV[2] the id of the waiting writer's Locker (a
-- Locker's blocked callers of one key queue, so one claim serves them),
-- ARGV[3] ms
-- Returns 1 when readers hold the key and the claim was recorded, 0 when
-- the key is free or held exclusively (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = math.max(redis.call('PTTL', KEYS[1]), 0)
redis.call('ZADD', KEYS[2], now + left + tonumber(ARGV[3]), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1
