-- renew.lua: a live worker's heartbeat on one queue; it extends the lease of every job the worker runs.
-- Atomic so that the worker learns, in the same step, which of its jobs it no longer owns (reaped while
-- it was paused or partitioned: it must cancel them) and which an operator asked to abort.
-- Replay-safe: setting the heartbeat again and re-reading tokens changes nothing.
-- KEYS[1] workers (ZSET)  KEYS[2] activity (HASH)  KEYS[3] job hash prefix (ids come from the worker)
-- ARGV[1] worker id  ARGV[2] lease ms  ARGV[3] activity gap ms  ARGV[4..] pairs: job id, token
-- Returns {{ids whose lease is lost}, {ids with an abort request}}
local now = now_ms()
touch_activity(KEYS[2], now, tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local lost, aborts = {}, {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local state = redis.call('HMGET', KEYS[3] .. id, 'status', 'token', 'abort')
  if state[1] ~= 'running' or state[2] ~= ARGV[i + 1] then
    lost[#lost + 1] = id
  elseif state[3] then
    aborts[#aborts + 1] = id
  end
end
return {lost, aborts}
