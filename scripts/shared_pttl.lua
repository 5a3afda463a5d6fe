-- Remaining TTL of a shared lease, only while it is held.
-- KEYS[1] lock key, KEYS[2] lease set (same hash slot)
-- ARGV[1] shared marker, ARGV[2] token
-- Returns the lease's remaining TTL in ms, or -3 when it is not held.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -3
end
local exp = redis.call('ZSCORE', KEYS[2], ARGV[2])
if exp == false then
  return -3
end
local t = redis.call('TIME')
local left = tonumber(exp) - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
if left <= 0 then
  return -3
end
return left
