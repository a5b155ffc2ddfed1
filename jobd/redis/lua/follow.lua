-- follow.lua: a client starts reading a job's events (job.events()). Turns the job's event stream
-- on, so that the scripts that move the job add its lifecycle events from now on, and begins it
-- with where the job stands: 'started' (with its try) while it runs, its end event once it ended.
-- Atomic so that no change of the job falls between the look and the switch. Replay-safe: a
-- stream that is on is left alone.
-- KEYS[1] job hash  KEYS[2] event stream
-- ARGV[1] job id
-- Returns {the job's status, the number of its last event (0: none yet)}: status 'gone' when its
-- record expired but its stream is still kept (a job whose result is not kept); false when
-- neither exists.
local state = redis.call('HMGET', KEYS[1], 'status', 'ev', 'tries', 'error')
local status = state[1]
if not status then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
  if last then return {'gone', tonumber(string.match(last[1], '%d+$'))} end
  return false
end
if state[2] then return {status, tonumber(state[2])} end
local now = now_ms()
local data = {try = tonumber(state[3])}
if status == 'failed' then data = error_event(state[3], state[4]) end
if status == 'running' then
  return {status, job_event(KEYS[1], ARGV[1], 0, 'started', data, now)}
elseif status == 'succeeded' or status == 'failed' or status == 'aborted' then
  job_event(KEYS[1], ARGV[1], 0, status, data, now)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  return {status, 1}
end
redis.call('HSET', KEYS[1], 'ev', 0)
return {status, 0}
