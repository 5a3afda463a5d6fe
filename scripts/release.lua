-- Release a lock only if it still carries the caller's value (token and
-- owner label), and wake the callers blocked on it. When callers queue for
-- the lock (fair waiting), the lock goes straight to the first live one
-- instead: it is never free in between.
-- KEYS[1] lock key; its fence counter KEYS[1]..':fence' and its queue
-- KEYS[1]..':q' are named from it here (as the force-release marker is),
-- which keeps the release's arguments as few as before queues existed:
-- they share the lock key's hash tag, so they are in its slot.
-- ARGV[1] the stored value, ARGV[2] how to publish (see wake.lua:
-- 'SPUBLISH' on a Redis Cluster, anything else PUBLISH), optional ARGV[3]
-- the caller's own queue entry to pass over (none when absent or '').
-- The nonce of the heir's token is sha1(ARGV[1]..ARGV[4]): fresh for each
-- release, as each hold has a value of its own, and it tells nothing of
-- the value. ARGV[4], optional, is a fresh random string from a caller
-- whose value may repeat (WithToken, a clean-up's release), so that two
-- turns never get one token.
-- Returns 1 when deleted, 2 when deleted but the wake-up could not be
-- published (a user without permission on the channel: the release stands,
-- waiters fall back to their capped re-checks), 3 when handed to a queued
-- waiter, 0 when the key does not exist (expired or deleted), -1 when it
-- is held by another token (taken over), -2 when an operator
-- force-released it from this value (force_release.lua left a marker;
-- looked for only when not held).
--
-- The queue: KEYS[1]..':q' is a list of entry ids in arrival order; entry id's
-- data is the string KEYS[1]..':q:'..id, "<secret> <ttl ms> <fence flag>
-- <anchor> <owner label> <counted>" (the label may be empty or hold
-- spaces), which expires unless its waiter refreshes it. The head is
-- rotated to the tail (it keeps its place for its next turn) and gets the
-- lock when its entry is alive and, where subscribers are counted
-- (<counted> = 1), someone listens on its channel KEYS[1]..':wake:'..id.
-- Its value is id..'.'..sha1(secret..nonce), NUL "owner:" and its label
-- (owner.go), its fence is drawn before the lock is set (as in
-- acquire.lua), and it is told on its channel: "<nonce> <fence> <ttl ms>
-- <anchor> <owner label>". A dead entry is dropped (a fence drawn for it,
-- which nobody saw, is given back) and the next one tried. The head is taken before
-- the lock is checked, so that one MGET reads both: a hand-over costs
-- EVALSHA, LMOVE, MGET, SET and PUBLISH. When the lock is not this
-- value's the head is put back, and nothing has changed.

-- notHeld answers for a lock that this value does not hold.
local function notHeld(cur)
  if redis.call('GET', KEYS[1] .. ':forced:' .. redis.sha1hex(ARGV[1])) then
    return -2
  end
  if cur == false then
    return 0
  end
  return -1
end

-- try hands the lock to entry id (with entry data e) when it is alive,
-- and reports whether it did; a dead entry, at the tail after the LMOVE
-- that took it, is dropped.
local nonce = redis.sha1hex(ARGV[1] .. (ARGV[4] or ''))
local fenceKey = KEYS[1] .. ':fence'

local function try(q, id, e)
  local secret, ttl, fenced, anchor, label, counted
  if e then
    secret, ttl, fenced, anchor, label, counted = string.match(e, '^(%S+) (%d+) ([01]) (%d+) (.*) ([01])$')
  end
  if secret then
    local fence = 0
    if fenced == '1' then
      fence = redis.call('INCR', fenceKey)
    end
    local heard = publishOn(KEYS[1] .. ':wake:' .. id, nonce .. ' ' .. fence .. ' ' .. ttl .. ' ' .. anchor .. ' ' .. label, ARGV[2])
    if type(heard) == 'number' and (heard > 0 or counted == '0') then
      redis.call('SET', KEYS[1], id .. '.' .. redis.sha1hex(secret .. nonce) .. '\0owner:' .. label, 'PX', ttl)
      return true
    end
    if fenced == '1' then
      redis.call('DECR', fenceKey) -- nobody saw it: the next turn draws it again
    end
  end
  -- Gone (expired, or nobody listens).
  redis.call('RPOP', q)
  redis.call('DEL', q .. ':' .. id)
  return false
end

local q = KEYS[1] .. ':q'
-- A user without the list commands (an ACL made before queues existed)
-- has no queue: release as before.
local id = redis.pcall('LMOVE', q, q, 'LEFT', 'RIGHT')
if type(id) == 'table' then
  id = false
end
if id then
  -- The head's entry and the lock in one read. Not ours: put the head
  -- back where it was, and change nothing.
  local got = redis.call('MGET', KEYS[1], q .. ':' .. id)
  if got[1] ~= ARGV[1] then
    redis.call('LMOVE', q, q, 'RIGHT', 'LEFT')
    return notHeld(got[1])
  end
  local e = got[2]
  local passed = false
  while id do
    if id == ARGV[3] then
      if passed then
        break -- our own entry again: nobody else is alive
      end
      passed = true
    elseif try(q, id, e) then
      return 3
    end
    id = redis.call('LMOVE', q, q, 'LEFT', 'RIGHT')
    if id then
      e = redis.call('GET', q .. ':' .. id)
    end
  end
else
  local cur = redis.call('GET', KEYS[1])
  if cur ~= ARGV[1] then
    return notHeld(cur)
  end
end
redis.call('DEL', KEYS[1])
if not wake(KEYS[1], ARGV[2]) then
  return 2
end
return 1
