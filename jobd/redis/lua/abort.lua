-- abort.lua: abort a job. A waiting job (queued or scheduled) is removed at once; a running job gets an
-- abort request that its worker sees within a moment (pub/sub message, and its next heartbeat).
-- Atomic so that a job cannot be claimed between the status check and its removal.
-- Replay-safe: aborting an aborted job reports 'aborted' again and changes nothing.
-- KEYS[1] job hash  KEYS[2] queued  KEYS[3] scheduled  KEYS[4] done list
-- ARGV[1] id  ARGV[2] pub/sub channel of the queue's abort requests  ARGV[3] keep ms
-- A waiting job whose event stream is on gets its 'aborted' event there; its dependants follow
-- their after_failure (see _lib.lua, Workflows).
-- Returns 'aborted' (will not run), 'requested' (running; its worker will cancel it), or the status of a
-- job that already ended ('succeeded', 'failed'), or 'not_found'
local state = redis.call('HMGET', KEYS[1], 'status', 'held', 'group', 'ev', 'links')
local status = state[1]
if not status then return 'not_found' end
if status == 'queued' or status == 'scheduled' or status == 'waiting' then
  -- waiting for its parents (see _lib.lua, Workflows)
  if status == 'waiting' then
    local base = queue_base(KEYS[2])
    redis.call('ZREM', base .. 'waiting', ARGV[1])
    redis.call('DEL', base .. 'waits:' .. ARGV[1])
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  -- held back by a limit: its 'held' field names the limit's keys (see claim.lua)
  if state[2] and redis.call('ZREM', state[2] .. 'held', ARGV[1]) == 1
      and redis.call('EXISTS', state[2] .. 'held') == 0 then
    redis.call('ZREM', queue_base(KEYS[2]) .. 'held', state[2])
  end
  -- waiting in its group (see enqueue_ready)
  if state[3] then
    local base = queue_base(KEYS[2])
    local group_key = base .. 'queued:' .. state[3]
    if redis.call('ZREM', group_key, ARGV[1]) == 1 then
      ungroup_one(base)
      if redis.call('EXISTS', group_key) == 0 then redis.call('ZREM', base .. 'turns', state[3]) end
    end
  end
  local now = now_ms()
  redis.call('HSET', KEYS[1], 'status', 'aborted', 'finished_at', now)
  job_event(KEYS[1], ARGV[1], state[4], 'aborted', nil, now)
  notify_done(KEYS[1], KEYS[4], tonumber(ARGV[3]))
  keep_ended(KEYS[1], ARGV[1], state[5], state[4], tonumber(ARGV[3]))
  return 'aborted'
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'abort', '1')
  redis.call('PUBLISH', ARGV[2], ARGV[1])
  return 'requested'
end
return status
