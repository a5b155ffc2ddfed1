-- emit.lua: append what a running job emitted (jobd.current_job().emit and .progress) to its event
-- stream, in order, as one batch, and store its latest progress on its hash. Turns the stream on
-- if it was off: its first event is then the 'started' of the running try (see _lib.lua).
-- Atomic so that the fence, the ids and the count on the job hash agree. Fenced: only the worker
-- running the job under its token writes; a worker whose lease was lost writes nothing. Replay-safe: each batch of one try has a number, increasing; a batch at or
-- below the last one written under the same token is a replay and changes nothing.
-- KEYS[1] job hash  KEYS[2] event stream
-- ARGV[1] token  ARGV[2] batch number  ARGV[3] longest stream: the oldest events are trimmed
-- ARGV[4] events dropped before this batch (the worker's buffer was full): their ids are skipped,
-- so that readers see a gap, not a silent loss  ARGV[5] latest progress JSON ('' = none here)
-- ARGV[6..] per event: name, time (ms), data JSON ('' = none)
-- Returns 'ok', 'stale' (the job is not running under this token) or 'replayed'
local state = redis.call('HMGET', KEYS[1], 'status', 'token', 'ev', 'evb', 'tries')
if state[1] ~= 'running' or state[2] ~= ARGV[1] then return 'stale' end
local last = state[4]
if last then
  local separator = string.find(last, ' ', 1, true)
  if separator and string.sub(last, 1, separator - 1) == ARGV[1]
      and tonumber(string.sub(last, separator + 1)) >= tonumber(ARGV[2]) then
    return 'replayed'
  end
end
local stream = KEYS[2]
local n = tonumber(state[3] or 0)
if not state[3] then
  n = n + 1
  redis.call('XADD', stream, '0-' .. n, 'e', 'started', 't', now_ms(), 'd',
    cjson.encode({try = tonumber(state[5])}))
end
n = n + tonumber(ARGV[4])
for i = 6, #ARGV, 3 do
  n = n + 1
  if ARGV[i + 2] == '' then
    redis.call('XADD', stream, '0-' .. n, 'e', ARGV[i], 't', ARGV[i + 1])
  else
    redis.call('XADD', stream, '0-' .. n, 'e', ARGV[i], 't', ARGV[i + 1], 'd', ARGV[i + 2])
  end
end
redis.call('XTRIM', stream, 'MAXLEN', ARGV[3])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'ev', n, 'evb', ARGV[1] .. ' ' .. ARGV[2], 'progress', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'ev', n, 'evb', ARGV[1] .. ' ' .. ARGV[2])
end
return 'ok'
