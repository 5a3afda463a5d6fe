-- A Redlock node's part of a refresh: extend the lock if it still carries
-- the caller's value (token and owner label), and tell a key that is gone
-- (the node restarted empty, or the key expired there while the node was
-- cut off) from one that another token holds. Writes nothing when the key
-- is gone: the caller takes it again there (SET NX) only once a quorum of
-- nodes has confirmed that it still holds the lock.
-- KEYS[1] lock key; ARGV[1] the stored value, ARGV[2] new TTL in ms
-- Returns 1 when extended, 2 when the key is gone, 0 when another token
-- holds it, 3 when an operator force-released it from this value
-- (force_release.lua left a marker; looked for only when the key is not
-- this value's, and before "gone", so that the key is not taken again).
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('GET', KEYS[1] .. ':forced:' .. redis.sha1hex(ARGV[1])) then
  return 3
end
if cur == false then
  return 2
end
return 0
