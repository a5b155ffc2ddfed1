-- finish.lua: store the final outcome of one or more jobs a worker ran (succeeded, failed, aborted).
-- Atomic per job so that the outcome, the release of the lease and the wake-up of waiting clients happen
-- together. Fenced: a job whose token is not the caller's (its lease was lost and another worker owns
-- it now) is left untouched. Replay-safe: a job already finished under this token is reported as such.
-- KEYS[1] running  KEYS[2] dead  KEYS[3] owned:<worker>  KEYS[4..] per job: job hash, done list
-- ARGV per job, 7 each: id, token, status, field ('result' or 'error'), value, keep ms,
-- dead-letter ('1' keeps the job in the dead set without a TTL, '0' keeps it keep ms)
-- Returns per job: 'ok', 'stale' (token mismatch, nothing changed) or 'replayed'
local now = now_ms()
local reply = {}
for i = 0, (#KEYS - 3) / 2 - 1 do
  local job_key, done_key = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local a = 1 + 7 * i
  local id, token, status = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local state = redis.call('HMGET', job_key, 'status', 'token')
  if state[2] ~= token then
    reply[#reply + 1] = 'stale'
  elseif state[1] ~= 'running' then
    reply[#reply + 1] = 'replayed'
  else
    redis.call('HSET', job_key, 'status', status, 'finished_at', now, ARGV[a + 3], ARGV[a + 4])
    redis.call('HDEL', job_key, 'abort')
    redis.call('ZREM', KEYS[1], id)
    redis.call('SREM', KEYS[3], id)
    local keep_ms = tonumber(ARGV[a + 5])
    notify_done(job_key, done_key, keep_ms)
    if ARGV[a + 6] == '1' then
      redis.call('ZADD', KEYS[2], now, id)
    else
      keep_for(job_key, keep_ms)
    end
    reply[#reply + 1] = 'ok'
  end
end
return reply
