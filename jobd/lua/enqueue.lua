-- enqueue.lua: store one or more jobs of one queue, deduplicated by job id.
-- Atomic so that a job is either fully stored and findable by a worker, or not at all. Replay-safe: the
-- client generates job ids, so a command re-sent after a lost reply finds the job and creates nothing.
-- KEYS[1] queued (ZSET)  KEYS[2] scheduled (ZSET)  KEYS[3] seq (STR)  KEYS[4] wake (LIST)
-- KEYS[5..] one job hash per job, in ARGV order
-- ARGV[1] queue name  ARGV[2] priority (int)  ARGV[3] max_tries ('' = worker default)
-- ARGV[4] timeout ms ('' = worker default)  ARGV[5] delay ms ('' = none)  ARGV[6] at, epoch ms ('' = none)
-- ARGV[7] expires, ms after enqueue ('' = never)  ARGV[8..] per job: id, function, payload
-- Returns a flat list: per job 1 (created) or 0 (existed), then its status.
local now = now_ms()
local due = now
if ARGV[5] ~= '' then
  due = now + tonumber(ARGV[5])
elseif ARGV[6] ~= '' then
  due = tonumber(ARGV[6])
end
local result = {}
local woken = false
for i = 5, #KEYS do
  local job_key = KEYS[i]
  local base = 8 + (i - 5) * 3
  local id = ARGV[base]
  if redis.call('EXISTS', job_key) == 1 then
    result[#result + 1] = 0
    result[#result + 1] = redis.call('HGET', job_key, 'status') or 'unknown'
  else
    local seq = redis.call('INCR', KEYS[3])
    redis.call('HSET', job_key, 'id', id, 'function', ARGV[base + 1], 'payload', ARGV[base + 2],
      'queue', ARGV[1], 'priority', ARGV[2], 'seq', seq, 'tries', 0, 'lost', 0,
      'enqueued_at', now, 'due_at', due)
    if ARGV[3] ~= '' then redis.call('HSET', job_key, 'max_tries', ARGV[3]) end
    if ARGV[4] ~= '' then redis.call('HSET', job_key, 'timeout', ARGV[4]) end
    if ARGV[7] ~= '' then redis.call('HSET', job_key, 'expires_at', now + tonumber(ARGV[7])) end
    local status
    if due > now then
      redis.call('ZADD', KEYS[2], due, id)
      redis.call('HSET', job_key, 'status', 'scheduled')
      status = 'scheduled'
    else
      redis.call('ZADD', KEYS[1], queue_score(ARGV[2], seq), id)
      redis.call('HSET', job_key, 'status', 'queued')
      status = 'queued'
    end
    woken = true
    result[#result + 1] = 1
    result[#result + 1] = status
  end
end
-- Also for a deferred job: an idle worker wakes, learns the new earliest due time and sleeps until then.
if woken then wake(KEYS[4]) end
return result
