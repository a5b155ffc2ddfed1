-- retry.lua: schedule another try of a job that failed (or asked for a retry) after a delay.
-- Atomic so that the job leaves 'running' and enters 'scheduled' in one step. Fenced by the token;
-- replay-safe: a job no longer running under this token is reported, not rescheduled twice.
-- KEYS[1] job hash  KEYS[2] running  KEYS[3] scheduled  KEYS[4] owned:<worker>  KEYS[5] wake
-- KEYS[6] queued (for a job a freed limit slot lets go: see release_slots)
-- ARGV[1] id  ARGV[2] token  ARGV[3] delay ms  ARGV[4] error JSON of the failed try
-- Returns {'ok' | 'stale' | 'replayed', due ms} (replayed: the due time the first call stored)
-- A job whose event stream is on gets a 'retrying' event there.
local now = now_ms()
local state = redis.call('HMGET', KEYS[1], 'status', 'token', 'due_at', 'slots', 'ev',
  'tries')
if state[2] ~= ARGV[2] then return {'stale', 0} end
if state[1] ~= 'running' then return {'replayed', tonumber(state[3]) or 0} end
local due = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'scheduled', 'due_at', due, 'error', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
release_slots(state[4], KEYS[1], ARGV[1], KEYS[6], KEYS[5])
redis.call('ZADD', KEYS[3], due, ARGV[1])
job_event(KEYS[1], ARGV[1], state[5], 'retrying', error_event(state[6], ARGV[4], tonumber(ARGV[3])),
  now)
wake(KEYS[5])
return {'ok', due}
