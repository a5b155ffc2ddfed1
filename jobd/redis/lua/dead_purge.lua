-- dead_purge.lua: delete dead-lettered jobs of one queue for good, for an operator (jobd dead purge):
-- the job hash, its done list, its event stream and its member of the dead set.
-- Atomic so that a job is never left half deleted, and a job that is no longer a dead letter (retried
-- meanwhile and queued or running again) is never deleted. Replay-safe: an id no longer in the dead set
-- is skipped and reported; an id in the dead set whose hash is gone or is no longer a failed job only
-- loses its dead-set member (its hash is left alone) and is reported as skipped too.
-- KEYS[1] dead (ZSET)  KEYS[2] job hash prefix  KEYS[3] done list prefix (ids are ARGV values; same
-- hash tag)
-- ARGV[1..] job ids (a bounded batch per call, e.g. 500)
-- Returns {{purged ids}, {skipped ids}}
local purged, skipped = {}, {}
for _, id in ipairs(ARGV) do
  local job_key = KEYS[2] .. id
  if not take_dead(KEYS[1], job_key, id) then
    skipped[#skipped + 1] = id
  else
    local base = base_of(job_key, id)
    if redis.call('HEXISTS', job_key, 'links') == 1 then
      -- of a workflow: its dependants must still be told it failed, and its parents that it
      -- ended; what stays is a record without its arguments, result or error, which the
      -- worker that settles it deletes (keep_unneeded)
      redis.call('HDEL', job_key, 'payload', 'result', 'error', 'progress', 'headers')
      redis.call('HSET', job_key, 'purged', 1)
      links_ended(job_key, id, 0)
      redis.call('DEL', KEYS[3] .. id, base .. 'waits:' .. id)
    else
      redis.call('DEL', job_key, KEYS[3] .. id, events_key(job_key, id), base .. 'waits:' .. id,
        base .. 'dependants:' .. id)
    end
    purged[#purged + 1] = id
  end
end
return {purged, skipped}
