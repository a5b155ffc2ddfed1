-- throttle.lua: a running job was refused by the service it calls (it raised jobd.Throttled): pause
-- the given limits for the whole fleet, and put the job back to wait for them without charging the
-- try; once the job has been throttled for longer than max_throttled in all, dead-letter it.
-- Atomic so that the job is never both running and waiting, and its slots go back with it.
-- Fenced by the token; replay-safe: a job no longer running under this token is left alone.
-- KEYS[1] job hash  KEYS[2] running  KEYS[3] owned:<worker>  KEYS[4] queued  KEYS[5] wake
-- KEYS[6] held index  KEYS[7] dead  KEYS[8] scheduled  KEYS[9] limit key prefix (see claim.lua)
-- ARGV[1] id  ARGV[2] token  ARGV[3] pause ms  ARGV[4] max throttled ms  ARGV[5] error JSON
-- ARGV[6..] pairs: limit name, per group (0/1); the first holds the job. None: the job waits in
-- 'scheduled' for the pause instead.
-- Returns {'ok' | 'dead' | 'stale' | 'replayed', until ms}
-- A job whose event stream is on gets a 'retrying' event there ('failed' when dead-lettered).
local now = now_ms()
local id = ARGV[1]
local state = redis.call('HMGET', KEYS[1], 'status', 'token', 'slots', 'throttled_since',
  'priority', 'seq', 'group', 'ev', 'tries', 'links')
if state[2] ~= ARGV[2] then return {'stale', 0} end
if state[1] ~= 'running' then return {'replayed', 0} end
redis.call('ZREM', KEYS[2], id)
redis.call('SREM', KEYS[3], id)
redis.call('HDEL', KEYS[1], 'token')
release_slots(state[3], KEYS[1], id, KEYS[4], KEYS[5])
local since = tonumber(state[4]) or now
if now - since >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', now, 'error', ARGV[5])
  redis.call('ZADD', KEYS[7], now, id)
  job_event(KEYS[1], id, state[8], 'failed', error_event(state[9], ARGV[5]), now)
  if state[10] then links_ended(KEYS[1], id, 0) end
  return {'dead', 0}
end
local pause = tonumber(ARGV[3])
local until_ms = now + pause
job_event(KEYS[1], id, state[8], 'retrying', error_event(state[9], ARGV[5], pause), now)
redis.call('HINCRBY', KEYS[1], 'tries', -1)
redis.call('HSET', KEYS[1], 'throttled_since', since, 'error', ARGV[5])
if #ARGV < 6 then
  redis.call('HSET', KEYS[1], 'status', 'scheduled', 'due_at', until_ms)
  redis.call('ZADD', KEYS[8], until_ms, id)
  wake(KEYS[5])
  return {'ok', until_ms}
end
local holder = nil
for i = 6, #ARGV, 2 do
  local base = limit_base(KEYS[9], ARGV[i], ARGV[i + 1], state[7])
  holder = holder or base
  local paused = tonumber(redis.call('GET', base .. 'paused') or 0)
  if paused < until_ms then
    redis.call('SET', base .. 'paused', until_ms, 'PX', pause)
  end
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'held', holder)
redis.call('ZADD', holder .. 'held', queue_score(state[5] or 0, state[6] or 0), id)
redis.call('ZADD', KEYS[6], 'LT', until_ms, holder) -- LT adds a missing member too
wake(KEYS[5])
return {'ok', until_ms}
