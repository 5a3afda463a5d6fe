-- A Redlock node's part of a refresh: extend the lock if it still carries
-- the caller's token, and tell a key that is gone (the node restarted
-- empty, or the key expired there while the node was cut off) from one
-- that another token holds. Writes nothing when the key is gone: the
-- caller takes it again there (SET NX) only once a quorum of nodes has
-- confirmed that it still holds the lock.
-- KEYS[1] lock key; ARGV[1] token, ARGV[2] new TTL in ms
-- Returns 1 when extended, 2 when the key is gone, 0 when another token
-- holds it.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if cur == false then
  return 2
end
return 0
