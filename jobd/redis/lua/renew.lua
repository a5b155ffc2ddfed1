-- renew.lua: a live worker's heartbeat on one queue; it extends the lease of every job the worker runs.
-- Atomic so that the worker learns, in the same step, which of its jobs it no longer owns (reaped while
-- it was paused or partitioned: it must cancel them) and which an operator asked to abort.
-- It also releases orphans: jobs claimed for this worker more than a lease ago that the worker does not
-- know it runs (a claim whose reply never arrived, even after retries); they go back to their place in
-- the queue without charging a try, since they never started.
-- Replay-safe: setting the heartbeat again and re-reading tokens changes nothing.
-- KEYS[1] workers (ZSET)  KEYS[2] activity (HASH)  KEYS[3] job hash prefix (ids come from the worker)
-- KEYS[4] owned:<worker> (SET)  KEYS[5] queued  KEYS[6] running  KEYS[7] wake
-- ARGV[1] worker id  ARGV[2] lease ms  ARGV[3] activity gap ms  ARGV[4] '0' while a claim of
-- this worker is in flight (sent, its reply not yet taken in): then nothing is released, since
-- the jobs it took may be in a reply on its way after a Redis pause longer than a lease (found
-- by the soak: both this worker and another ran them)  ARGV[5..] pairs: job id, token
-- Returns {{id, token, id, token ... of runs whose lease is lost}, {ids with an abort request},
-- {orphans released}}
local now = now_ms()
local lease = tonumber(ARGV[2])
touch_activity(KEYS[2], now, tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
local lost, aborts, released = {}, {}, {}
local known = {}
local may_release = ARGV[4] ~= '0'
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  known[id] = true
  local state = redis.call('HMGET', KEYS[3] .. id, 'status', 'token', 'abort')
  if state[1] ~= 'running' or state[2] ~= ARGV[i + 1] then
    lost[#lost + 1] = id
    lost[#lost + 1] = ARGV[i + 1]
  elseif state[3] then
    aborts[#aborts + 1] = id
  end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if not known[id] then
    local job_key = KEYS[3] .. id
    local state = redis.call('HMGET', job_key, 'status', 'started_at', 'slots')
    if state[1] ~= 'running' then
      redis.call('SREM', KEYS[4], id)
    elseif may_release and tonumber(state[2] or 0) < now - lease then
      redis.call('SREM', KEYS[4], id)
      redis.call('ZREM', KEYS[6], id)
      redis.call('HDEL', job_key, 'token')
      release_slots(state[3], job_key, id, KEYS[5], KEYS[7])
      redis.call('HINCRBY', job_key, 'tries', -1)
      make_ready(KEYS[5], job_key, id)
      wake(KEYS[7])
      released[#released + 1] = id
    end
  end
end
return {lost, aborts, released}
