-- requeue.lua: put a running job back at its place in the queue without charging the try (drain).
-- Atomic so that the job is never both running and queued. Fenced by the token; replay-safe: a job no
-- longer running under this token is left alone. A job with a pending abort request is aborted instead.
-- KEYS[1] job hash  KEYS[2] running  KEYS[3] queued  KEYS[4] owned:<worker>  KEYS[5] wake
-- KEYS[6] done list
-- ARGV[1] id  ARGV[2] token  ARGV[3] keep ms (for a job aborted instead)
-- Returns 'ok', 'aborted', 'stale' or 'replayed'
-- A job whose event stream is on gets an 'aborted' or 'retrying' event there.
local state = redis.call('HMGET', KEYS[1], 'status', 'token', 'abort', 'slots', 'ev', 'tries',
  'links')
if state[2] ~= ARGV[2] then return 'stale' end
if state[1] ~= 'running' then return 'replayed' end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[1], 'token')
release_slots(state[4], KEYS[1], ARGV[1], KEYS[3], KEYS[5])
local now = now_ms()
if state[3] then
  redis.call('HSET', KEYS[1], 'status', 'aborted', 'finished_at', now)
  job_event(KEYS[1], ARGV[1], state[5], 'aborted', {try = tonumber(state[6])}, now)
  notify_done(KEYS[1], KEYS[6], tonumber(ARGV[3]))
  keep_ended(KEYS[1], ARGV[1], state[7], state[5], tonumber(ARGV[3]))
  return 'aborted'
end
redis.call('HINCRBY', KEYS[1], 'tries', -1)
job_event(KEYS[1], ARGV[1], state[5], 'retrying', {try = tonumber(state[6]), error = 'WorkerStopped',
  message = 'its worker stopped (drain) before the job ended; it runs again', delay = 0}, now)
make_ready(KEYS[3], KEYS[1], ARGV[1])
wake(KEYS[5])
return 'ok'
