-- cron.lua: fire one tick of a cron entry: record it as the entry's last tick and enqueue its job.
-- Atomic so that of all the workers that evaluate the same tick exactly one enqueues its job: the
-- check of the entry's last tick and the enqueue cannot interleave with another worker's. Ticks only
-- move forward: a tick at or before the stored last tick was fired already (or passed over, and
-- counted as missed, by the worker that fired a later one). Replay-safe: a call re-sent after a lost
-- reply finds its own worker's tick and answers as the first call did; the job id is the tick's.
-- KEYS[1] the entry's state (HASH: last_tick, prev_tick, last_job, fired_by, fired_at)
-- KEYS[2] queued (ZSET)  KEYS[3] scheduled (ZSET)  KEYS[4] seq (STR)  KEYS[5] wake (LIST)
-- KEYS[6] the tick's job hash
-- ARGV[1] tick, epoch ms  ARGV[2] job id  ARGV[3] function  ARGV[4] payload  ARGV[5] queue name
-- ARGV[6] priority (int)  ARGV[7] worker id  ARGV[8] how long the state is kept, ms
-- ARGV[9] the job's signature ('' = unsigned)
-- Returns {1, the previous last tick (epoch ms, 0 = none)} when this call fired the tick, or
-- {0, the stored last tick} when the tick had been fired already.
local tick = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'last_tick', 'fired_by', 'prev_tick')
local last = tonumber(state[1])
if last ~= nil and last >= tick then
  if last == tick and state[2] == ARGV[7] then
    return {1, tonumber(state[3]) or 0}
  end
  return {0, last}
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'last_tick', ARGV[1], 'prev_tick', state[1] or '0', 'last_job', ARGV[2],
  'fired_by', ARGV[7], 'fired_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
local created = store_job(KEYS[2], KEYS[3], KEYS[4], KEYS[6], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  ARGV[6], '', '', '', now, now, ARGV[9] or '')
if created == 1 then wake(KEYS[5]) end
return {1, last or 0}
