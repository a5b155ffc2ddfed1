-- detach.lua: a job ended, so one of its parents no longer has to keep its result for it: the job
-- leaves the parent's dependants set, and a parent that ended and has no dependant left gets the
-- TTL it was spared (keep_ms; a dead letter keeps none).
-- Atomic so that the set and the TTL agree. Replay-safe: a member already gone changes nothing
-- but the TTL, which is the same.
-- KEYS[1] the parent's hash  KEYS[2] its dependants set
-- ARGV[1] the parent's id  ARGV[2] the ended job's edge ("<queue> <id>")
-- Returns the number of dependants the parent still has
redis.call('SREM', KEYS[2], ARGV[2])
local left = redis.call('SCARD', KEYS[2])
if left == 0 then keep_unneeded(KEYS[1], ARGV[1]) end
return left
