-- dead_retry.lua: move dead-lettered jobs of one queue back to 'queued', for an operator (jobd dead retry).
-- Each job gets its tries and lost counts reset to 0 and returns to its original place in the queue
-- (same priority and enqueue order); its last error is kept, finished_at and any expiry are cleared.
-- Atomic so that a job is in exactly one of the dead set and the queue, and a worker never claims a job
-- that is half reset. Replay-safe: an id no longer in the dead set (retried already, purged) is skipped
-- and reported; an id in the dead set whose hash is gone or is no longer a failed job is removed from the
-- dead set and reported as skipped too.
-- KEYS[1] dead (ZSET)  KEYS[2] queued (ZSET)  KEYS[3] wake (LIST)
-- KEYS[4] job hash prefix  KEYS[5] done list prefix (ids are ARGV values; same hash tag)
-- ARGV[1..] job ids (a bounded batch per call, e.g. 500)
-- Returns {{retried ids}, {skipped ids}}
-- A job whose event stream is on gets a 'retrying' event there: its followers go on past its
-- 'failed' event to the new tries.
local now = now_ms()
local retried, skipped = {}, {}
for _, id in ipairs(ARGV) do
  local job_key = KEYS[4] .. id
  if not take_dead(KEYS[1], job_key, id) then
    skipped[#skipped + 1] = id
  else
    redis.call('PERSIST', job_key)
    job_event(job_key, id, redis.call('HGET', job_key, 'ev'), 'retrying',
      {try = 0, error = 'DeadLetterRetried', message = 'retried from the dead letters', delay = 0},
      now)
    redis.call('HSET', job_key, 'tries', 0, 'lost', 0, 'due_at', now)
    redis.call('HDEL', job_key, 'finished_at', 'expires_at', 'token', 'worker', 'abort', 'waiters')
    -- A stale done marker would make a new result() wait return at once, over and over.
    redis.call('DEL', KEYS[5] .. id)
    make_ready(KEYS[2], job_key, id)
    retried[#retried + 1] = id
  end
end
if #retried > 0 then wake(KEYS[3]) end
return {retried, skipped}
