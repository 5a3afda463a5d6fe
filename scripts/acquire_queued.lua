-- The attempt of a caller that waits its turn (fair waiting): take the
-- lock when it is free and no live waiter queued before this one; else
-- make sure this waiter's entry is in the queue (at the tail when it was
-- not, or no longer, there) and refresh it. See release.lua for the
-- queue's layout.
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] queue, KEYS[4] this
-- waiter's entry (KEYS[3]..':'..ARGV[4]); all in one hash slot
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] "1" to draw a fence, ARGV[4]
-- entry id, ARGV[5] entry data, ARGV[6] entry TTL in ms, ARGV[7] queue TTL
-- in ms, ARGV[8] how to publish (see wake.lua), ARGV[9] the shared marker
-- (shared.go)
-- Returns {1, fence} when obtained (fence 0 without fencing), {0, pttl}
-- when queued behind the holder (its PTTL), {3, pttl} when queued behind
-- shared leases (the key holds the marker: the caller records its claim
-- as a blocked writer), {0, -1} when the lock is free
-- but a live waiter is ahead (it was woken to take it), and {2, 0,
-- token, pttl} when the lock was handed to this entry (its token starts
-- with ARGV[4]..'.') but the message may have gone unheard: the lock is
-- left as it is (its holder may be a caller of the same Locker that heard
-- it), and the caller adopts it unless it heard it after all (with
-- acquire.lua, re-attaching to the token, which draws its fence). The
-- fence is drawn before the lock is set, as in acquire.lua.
local q = KEYS[3]
local cur = redis.call('GET', KEYS[1])
local wait = -1
if cur == false then
  local mine = false
  while true do
    local head = redis.call('LINDEX', q, 0)
    if head == false then
      break
    end
    if head == ARGV[4] then
      mine = true
      break
    end
    local ek = q .. ':' .. head
    local e = redis.call('GET', ek)
    if e then
      local heard = publishOn(KEYS[1] .. ':wake:' .. head, '', ARGV[8])
      if type(heard) == 'number' and (heard > 0 or string.sub(e, -1) == '0') then
        cur = nil
        break
      end
    end
    redis.call('LPOP', q) -- a dead entry (see release.lua)
    redis.call('DEL', ek)
  end
  if cur == false then
    if mine then
      redis.call('LMOVE', q, q, 'LEFT', 'RIGHT') -- keep the place for the next turn
    end
    local fence = 0
    if ARGV[3] == '1' then
      fence = redis.call('INCR', KEYS[2])
    end
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return {1, fence}
  end
else
  wait = redis.call('PTTL', KEYS[1])
  if string.sub(cur, 1, #ARGV[4] + 1) == ARGV[4] .. '.' then
    return {2, 0, cur, wait}
  end
end
if not redis.call('SET', KEYS[4], ARGV[5], 'XX', 'PX', ARGV[6]) then
  redis.call('LREM', q, 0, ARGV[4])
  redis.call('RPUSH', q, ARGV[4])
  redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
end
redis.call('PEXPIRE', q, ARGV[7])
if cur == ARGV[9] then
  return {3, wait}
end
return {0, wait}
