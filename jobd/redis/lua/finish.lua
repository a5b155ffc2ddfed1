-- finish.lua: store the final outcome of one or more jobs a worker ran (succeeded, failed, aborted).
-- Atomic per job so that the outcome, the release of the lease and the wake-up of waiting clients happen
-- together. Fenced: a job whose token is not the caller's (its lease was lost and another worker owns
-- it now) is left untouched. Replay-safe: a job already finished under this token is reported as such.
-- The batch travels as one JSON argument: a busy worker finishes hundreds of jobs per call, and one
-- string costs far less to send than seven arguments per job. Job and done-list keys are the given
-- prefixes plus the job id (same hash tag as every other key of the queue).
-- KEYS[1] running  KEYS[2] dead  KEYS[3] owned:<worker>  KEYS[4] job hash prefix
-- KEYS[5] done list prefix  KEYS[6] queued  KEYS[7] wake (a job held by a limit whose slot this
-- finish gives back goes back to the queue: see release_slots)
-- ARGV[1] JSON array; per job [id, token, status, field ('result' or 'error'), value, keep ms,
-- dead-letter (1 keeps the job in the dead set without a TTL, 0 keeps it keep ms), and, when
-- tracing, the traceparent of the try's span (kept for the links of the job's dependants)]
-- Returns per job: 'ok', 'stale' (token mismatch, nothing changed) or 'replayed'
-- A job whose event stream is on gets its end event (the status) there, in the same step; a job
-- of a workflow goes to its queue's settled list (see _lib.lua, Workflows).
local now = now_ms()
local reply = {}
local ended = {}
for _, item in ipairs(cjson.decode(ARGV[1])) do
  local id, token, status = item[1], item[2], item[3]
  local job_key = KEYS[4] .. id
  local state = redis.call('HMGET', job_key, 'status', 'token', 'slots', 'ev', 'tries', 'links',
    'abort', 'waiters')
  if state[2] ~= token then
    reply[#reply + 1] = 'stale'
  elseif state[1] ~= 'running' then
    reply[#reply + 1] = 'replayed'
  else
    if item[8] then
      redis.call('HSET', job_key, 'status', status, 'finished_at', now, item[4], item[5],
        'trace', item[8])
    else
      redis.call('HSET', job_key, 'status', status, 'finished_at', now, item[4], item[5])
    end
    if state[7] then redis.call('HDEL', job_key, 'abort') end
    ended[#ended + 1] = id
    release_slots(state[3], job_key, id, KEYS[6], KEYS[7])
    local keep_ms = tonumber(item[6])
    if state[4] then
      local data = {try = tonumber(state[5])}
      if status == 'failed' then data = error_event(state[5], item[5]) end
      job_event(job_key, id, state[4], status, data, now)
    end
    if state[8] then notify_done(job_key, KEYS[5] .. id, keep_ms) end
    if item[7] == 1 then
      redis.call('ZADD', KEYS[2], now, id)
      if state[6] then links_ended(job_key, id, keep_ms) end
    else
      keep_ended(job_key, id, state[6], state[4], keep_ms)
    end
    reply[#reply + 1] = 'ok'
  end
end
-- out of the running set and this worker's owned set, once for the whole batch
for first = 1, #ended, 1000 do
  local last = math.min(first + 999, #ended)
  redis.call('ZREM', KEYS[1], unpack(ended, first, last))
  redis.call('SREM', KEYS[3], unpack(ended, first, last))
end
return reply
