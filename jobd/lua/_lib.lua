-- _lib.lua: helpers shared by every jobd script; jobd/scripts.py prepends this file to each script.
-- Time always comes from the Redis server (TIME), so workers with skewed clocks agree.
if redis.replicate_commands then redis.replicate_commands() end

local PRIORITY_SPAN = 4398046511104 -- 2^42: room for 4.4e12 enqueues per queue within a priority

-- Milliseconds since the epoch on the Redis server's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Score in the queued ZSET: higher priority first, then enqueue order. Formatted with %.0f because
-- tostring() keeps only 14 significant digits.
local function queue_score(priority, seq)
  return string.format('%.0f', (tonumber(seq) or 0) - (tonumber(priority) or 0) * PRIORITY_SPAN)
end

-- Wake one idle worker blocked on the queue's marker list (at most one marker waits there).
local function wake(wake_key)
  if redis.call('LLEN', wake_key) == 0 then
    redis.call('RPUSH', wake_key, '1')
  end
end

-- Put a job (back) into the queued ZSET at its original place.
local function make_ready(queued_key, job_key, id)
  local fields = redis.call('HMGET', job_key, 'priority', 'seq')
  redis.call('ZADD', queued_key, queue_score(fields[1] or 0, fields[2] or 0), id)
  redis.call('HSET', job_key, 'status', 'queued')
end

-- Move up to `limit` due jobs from scheduled to queued; returns how many moved.
local function promote(scheduled_key, queued_key, job_prefix, now, limit)
  local due = redis.call('ZRANGE', scheduled_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local job_key = job_prefix .. id
    if redis.call('EXISTS', job_key) == 1 then
      make_ready(queued_key, job_key, id)
    end
  end
  if #due > 0 then
    redis.call('ZREM', scheduled_key, unpack(due))
  end
  return #due
end

-- Record that a worker touched the queue now. Returns the time since which the queue has been touched
-- without a gap longer than gap_ms: after a Redis pause or restart (or with no worker at all) that is
-- "now", and the reaper waits one lease before it trusts heartbeats again.
local function touch_activity(activity_key, now, gap_ms)
  local values = redis.call('HMGET', activity_key, 'last', 'since')
  local last, since = tonumber(values[1]), tonumber(values[2])
  if last == nil or since == nil or now - last > gap_ms then
    since = now
    redis.call('HSET', activity_key, 'since', since)
  end
  redis.call('HSET', activity_key, 'last', now)
  return since
end

-- Wake clients blocked in job.result(): only when one registered (the 'waiters' field), so a job that
-- nobody waits for costs nothing here.
local function notify_done(job_key, done_key, keep_ms)
  if redis.call('HEXISTS', job_key, 'waiters') == 1 then
    redis.call('RPUSH', done_key, '1')
    redis.call('PEXPIRE', done_key, math.max(keep_ms, 60000))
    redis.call('HDEL', job_key, 'waiters')
  end
end

-- Store the final state of a job: a TTL of keep_ms (0 = drop now) unless it stays as a dead letter.
local function keep_for(job_key, keep_ms)
  if keep_ms > 0 then
    redis.call('PEXPIRE', job_key, keep_ms)
  else
    redis.call('DEL', job_key)
  end
end
