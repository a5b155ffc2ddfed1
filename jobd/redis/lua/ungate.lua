-- ungate.lua: end the hold of a flow stored over several queues (Redis Cluster) on one of its
-- jobs. 'release' once the flow is committed: the gate's edge leaves the job's waits, and a job
-- with no other parent to wait for is queued. 'discard' for a flow that was never committed
-- (a parent was missing, or its producer died half way): the job is deleted, as if it had never
-- been stored; the caller detaches it from its parents with the ids returned.
-- Atomic so that the job is released or deleted whole. Replay-safe: a job whose 'gate' field no
-- longer names this gate (released or deleted already) is left alone.
-- KEYS[1] the job's hash  KEYS[2] its waits set (other keys share its hash tag)
-- ARGV[1] the job's id  ARGV[2] the gate  ARGV[3] 'release' or 'discard'
-- Returns {'released' | 'discarded' | 'done', parents JSON or ''}
local state = redis.call('HMGET', KEYS[1], 'gate', 'status', 'parents')
if state[1] ~= ARGV[2] then return {'done', ''} end
local id = ARGV[1]
local base = base_of(KEYS[1], id)
redis.call('ZREM', base .. 'gated', id)
if ARGV[3] == 'discard' then
  redis.call('DEL', KEYS[1], KEYS[2], base .. 'dependants:' .. id, base .. 'events:' .. id)
  redis.call('ZREM', base .. 'waiting', id)
  redis.call('ZREM', base .. 'dead', id)
  redis.call('ZREM', base .. 'settled', id)
  return {'discarded', state[3] or ''}
end
redis.call('HDEL', KEYS[1], 'gate')
redis.call('SREM', KEYS[2], '~ ' .. ARGV[2])
if state[2] == 'waiting' and redis.call('SCARD', KEYS[2]) == 0 then
  release_waiting(KEYS[1], id, now_ms())
end
return {'released', ''}
