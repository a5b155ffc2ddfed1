-- set_cost.lua: a running job corrects its cost once known (jobd.current_job().set_cost): the
-- difference is charged or refunded against the job's cost limits, in the window of its start.
-- Atomic so that the limit's spent sum always equals the costs it holds. Fenced by the token;
-- replay-safe: a second call with the same cost finds the cost already set and changes nothing.
-- KEYS[1] job hash  KEYS[2] limit key prefix (see claim.lua)
-- ARGV[1] id  ARGV[2] token  ARGV[3] new cost (integer >= 0)
-- ARGV[4..] pairs: name of a cost limit of the job's function, per group (0/1)
-- Returns {'ok' | 'stale', the previous cost}
local state = redis.call('HMGET', KEYS[1], 'status', 'token', 'cost', 'group')
if state[1] ~= 'running' or state[2] ~= ARGV[2] then return {'stale', 0} end
local old = tonumber(state[3]) or 1
local new = tonumber(ARGV[3])
if old == new then return {'ok', old} end
local start = ARGV[2] .. ':' .. ARGV[1]
for i = 4, #ARGV, 2 do
  local base = limit_base(KEYS[2], ARGV[i], ARGV[i + 1], state[4])
  local charged = redis.call('ZSCORE', base .. 'costs', start .. '|' .. old)
  -- gone: the start left the window already, and so did its cost
  if charged then
    redis.call('ZREM', base .. 'costs', start .. '|' .. old)
    redis.call('ZADD', base .. 'costs', charged, start .. '|' .. new)
    local ttl = redis.call('PTTL', base .. 'spent')
    redis.call('INCRBY', base .. 'spent', new - old)
    if ttl > 0 then redis.call('PEXPIRE', base .. 'spent', ttl) end
  end
end
redis.call('HSET', KEYS[1], 'cost', new)
return {'ok', old}
