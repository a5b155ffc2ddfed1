-- resolve.lua: tell a waiting job that one of its parents ended (a worker runs it for each
-- dependant of a job in its queue's 'settled' list; see _lib.lua, Workflows). The edge leaves the
-- job's waits set; with the last one gone the job is queued. A parent that failed or was aborted
-- fails a job whose after_failure is "fail" (dead-lettered with DependencyFailed, and its own
-- dependants are told in turn through its queue's 'settled' list).
-- Atomic so that the edge, the job's status and its place in the queue change together.
-- Replay-safe: an edge already gone changes nothing, so a parent that ended twice (run twice,
-- a replayed reply) releases its dependants once.
-- KEYS[1] the dependant's hash  KEYS[2] its waits set (other keys share its hash tag)
-- ARGV[1] the dependant's id  ARGV[2] the parent's edge ("<queue> <id>")  ARGV[3] the parent's
-- status ('succeeded', 'failed' or 'aborted')
-- Returns 'queued', 'waiting' (other parents left), 'failed', 'done' (the edge was gone already)
-- or 'missing' (no such job any more)
local state = redis.call('HMGET', KEYS[1], 'status', 'after_failure')
if not state[1] then return 'missing' end
if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return 'done' end
if state[1] ~= 'waiting' then return 'done' end
local now = now_ms()
if ARGV[3] ~= 'succeeded' and state[2] ~= 'run' then
  fail_waiting(KEYS[1], ARGV[1], ARGV[2], ARGV[3], now)
  return 'failed'
end
if redis.call('SCARD', KEYS[2]) > 0 then return 'waiting' end
release_waiting(KEYS[1], ARGV[1], now)
return 'queued'
