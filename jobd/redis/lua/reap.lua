-- reap.lua: give the jobs of dead workers (heartbeat expired) back to the queue, charging the try.
-- Atomic so that a job is either still owned by its worker or queued again, never both or neither.
-- Only workers whose heartbeat is gone lose their jobs, and only once the queue has been touched without
-- a gap for a whole lease: after a Redis pause or restart every heartbeat looks expired, and live workers
-- must get one lease to renew before anything is taken from them.
-- A job that has now lost its worker max_lost times is dead-lettered with that reason. The jobs given
-- back are staggered (the first at once, then one every min(lease/n, 100) ms through 'scheduled'):
-- given back together at their old places, the jobs a crash took down would be claimed together
-- again, and a job that kills its worker would take the same neighbours with it every time until
-- they too reached max_lost (found by tests/chaos F4).
-- Replay-safe: a reaped worker is removed, so a replay finds nothing left to do.
-- KEYS[1] workers  KEYS[2] activity  KEYS[3] queued  KEYS[4] running  KEYS[5] dead  KEYS[6] wake
-- KEYS[7] job hash prefix  KEYS[8] owned set prefix (owned:<worker>; worker ids come from KEYS[1])
-- KEYS[9] scheduled
-- ARGV[1] lease ms  ARGV[2] activity gap ms  ARGV[3] max_lost  ARGV[4] max workers per call
-- ARGV[5] keep ms for jobs aborted while their worker was dead
-- Returns {{requeued ids}, {dead-lettered: id, function, id, function ...}, {reaped worker ids}}
-- A job whose event stream is on gets an 'aborted', 'failed' or 'retrying' event there.
local now = now_ms()
local lease = tonumber(ARGV[1])
local since = touch_activity(KEYS[2], now, tonumber(ARGV[2]))
local requeued, dead, reaped = {}, {}, {}
if now - since < lease then
  return {requeued, dead, reaped}
end
local max_lost = tonumber(ARGV[3])
local workers = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[4]))
for _, worker in ipairs(workers) do
  local owned_key = KEYS[8] .. worker
  local prefix = worker .. ':'
  for _, id in ipairs(redis.call('SMEMBERS', owned_key)) do
    local job_key = KEYS[7] .. id
    local state = redis.call('HMGET', job_key, 'status', 'token', 'abort', 'function', 'slots',
      'ev', 'tries', 'links')
    if state[1] == 'running' and state[2] and string.sub(state[2], 1, #prefix) == prefix then
      local lost = redis.call('HINCRBY', job_key, 'lost', 1)
      redis.call('ZREM', KEYS[4], id)
      redis.call('HDEL', job_key, 'token')
      release_slots(state[5], job_key, id, KEYS[3], KEYS[6])
      if state[3] then
        redis.call('HSET', job_key, 'status', 'aborted', 'finished_at', now)
        job_event(job_key, id, state[6], 'aborted', {try = tonumber(state[7])}, now)
        keep_ended(job_key, id, state[8], state[6], tonumber(ARGV[5]))
      elseif lost >= max_lost then
        local error = {type = 'WorkerLost', message = 'worker died ' .. lost
          .. ' times while running this job (max_lost = ' .. max_lost .. ')'}
        redis.call('HSET', job_key, 'status', 'failed', 'finished_at', now, 'error',
          cjson.encode(error))
        job_event(job_key, id, state[6], 'failed',
          {try = tonumber(state[7]), error = error.type, message = error.message}, now)
        if state[8] then links_ended(job_key, id, 0) end
        redis.call('ZADD', KEYS[5], now, id)
        dead[#dead + 1] = id
        dead[#dead + 1] = state[4] or ''
      else
        job_event(job_key, id, state[6], 'retrying', {try = tonumber(state[7]),
          error = 'WorkerLost', message = 'its worker stopped heartbeating; it runs again',
          delay = 0}, now)
        requeued[#requeued + 1] = id
      end
    end
  end
  redis.call('DEL', owned_key)
  redis.call('ZREM', KEYS[1], worker)
  reaped[#reaped + 1] = worker
end
local step = math.min(100, math.floor(lease / math.max(#requeued, 1)))
for k, id in ipairs(requeued) do
  local job_key = KEYS[7] .. id
  if k == 1 or step == 0 then
    make_ready(KEYS[3], job_key, id)
  else
    local due = now + (k - 1) * step
    redis.call('HSET', job_key, 'status', 'scheduled', 'due_at', due)
    redis.call('ZADD', KEYS[9], due, id)
  end
end
if #requeued > 0 then wake(KEYS[6]) end
return {requeued, dead, reaped}
