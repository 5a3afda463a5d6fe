-- Extend a Redlock node's lock if it still carries the caller's token, or
-- take it again when the key is free on that node (the node restarted
-- empty, or the key expired there while the node was cut off): the holder
-- still has a quorum, so nobody else can have the lock. Never where another
-- token holds it.
-- KEYS[1] lock key; ARGV[1] token, ARGV[2] new TTL in ms
-- Returns 1 when extended, 2 when taken again, 0 when another token holds it.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
