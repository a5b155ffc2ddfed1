-- settled.lua: a worker has told every dependant of an ended job (resolve.lua) and detached it
-- from its parents (detach.lua): the job leaves its queue's 'settled' ZSET, and gets the TTL it
-- was spared (keep_ms) when no dependant needs its result any more.
-- Atomic so that the list and the TTL agree. Replay-safe: removing an id that is gone and setting
-- the same TTL again change nothing.
-- KEYS[1] the job's hash  KEYS[2] its dependants set  KEYS[3] the queue's settled ZSET
-- ARGV[1] the job's id
-- Returns the number of dependants that still need the job's result
redis.call('ZREM', KEYS[3], ARGV[1])
local left = redis.call('SCARD', KEYS[2])
if left == 0 then keep_unneeded(KEYS[1], ARGV[1]) end
return left
