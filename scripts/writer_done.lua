-- Withdraw a waiting writer's claim (see writer_wait.lua): it obtained the
-- lock, or gave up. A writer that gave up wakes the callers blocked on the
-- key (readers it held back), on release.lua's channel.
-- KEYS[1] lock key, KEYS[2] waiting writers (same hash slot)
-- ARGV[1] the id of the waiting writer's Locker, ARGV[2] "1" to wake the
-- blocked callers, ARGV[3] how to publish the wake-up (see wake.lua)
-- Returns 1 when the claim was there, 0 when it was not (expired).
local n = redis.call('ZREM', KEYS[2], ARGV[1])
if n == 1 and ARGV[2] == '1' then
  wake(KEYS[1], ARGV[3])
end
return n
