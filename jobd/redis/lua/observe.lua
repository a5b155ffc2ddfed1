-- observe.lua: read a job's outcome and, if it has not ended, register a waiter so that the script that
-- ends it pushes to the job's done list (job.result() blocks on that list instead of polling).
-- Atomic so that the job cannot end between the read and the registration unnoticed.
-- Replay-safe: registering twice is the same as once.
-- KEYS[1] job hash
-- Returns {status, result, error} (each may be false), or false when the job does not exist
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local state = redis.call('HMGET', KEYS[1], 'status', 'result', 'error')
if state[1] ~= 'succeeded' and state[1] ~= 'failed' and state[1] ~= 'aborted' then
  redis.call('HSET', KEYS[1], 'waiters', '1')
end
return state
