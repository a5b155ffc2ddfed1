-- settled.lua: a worker has told every dependant of an ended job (resolve.lua) and detached it
-- from its parents (detach.lua): the job leaves its queue's 'settled' ZSET, and gets the TTL it
-- was spared (keep_ms) when no dependant needs its result any more.
-- Atomic so that the list and the TTL agree. Replay-safe: removing an id that is gone and setting
-- the same TTL again change nothing.
-- KEYS[1] the job's hash  KEYS[2] its dependants set  KEYS[3] the queue's settled ZSET
-- ARGV[1] the job's id  ARGV[2] the entry's score the worker read: an entry with another score
-- is a later end of the job (a dead letter retried and ended again), which stays to be settled
-- Returns the number of dependants that still need the job's result, or -1 when the entry was
-- a later one and stays
local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
if score and tonumber(score) ~= tonumber(ARGV[2]) then return -1 end
redis.call('ZREM', KEYS[3], ARGV[1])
local left = redis.call('SCARD', KEYS[2])
if left == 0 then keep_unneeded(KEYS[1], ARGV[1]) end
return left
