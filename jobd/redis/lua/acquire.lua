-- acquire.lua: take a limit's budget outside a job (Client.limit): one start of `cost` against its
-- rate and cost, and a concurrency slot held until an expiry that the holder renews while it works
-- (a holder that dies lets its slot lapse instead of keeping it for ever).
-- Atomic so that the check and the take are one step, as in claim.lua. Replay-safe: a holder that
-- already has its slot is told so and takes nothing more.
-- KEYS[1] the limit's key base (<prefix>:{<queue>}:limit:<name>:[g:<group>:], see claim.lua)
-- ARGV[1] holder (a unique id)  ARGV[2] cost  ARGV[3] hold ms
-- ARGV[4..9] the limit's definition: rate count, rate ms, cost count, cost ms, concurrency,
-- per group (as in claim.lua)
-- Returns {'ok', now} when taken (or renewed: a holder that has its slot gets a new expiry),
-- {'slot', now} when it must wait for a slot to be given back, {'at', time (ms)} when it may try
-- again at that time, or {'never', now} when the cost alone is above the limit
local now = now_ms()
local base = KEYS[1]
local definition = {}
for i = 4, 9 do definition[#definition + 1] = tonumber(ARGV[i]) end
local hold_until = now + tonumber(ARGV[3])
if redis.call('ZADD', base .. 'running', 'XX', 'CH', hold_until, ARGV[1]) == 1
    or redis.call('ZSCORE', base .. 'running', ARGV[1]) then
  return {'ok', now}
end
local state = limit_state(base, definition, now)
local at = limit_allowed_at(state, base, definition, tonumber(ARGV[2]), now)
if at == 0 then return {'slot', now} end
if at == -1 then return {'never', now} end
if at ~= nil then return {'at', at} end
limit_take(state, base, definition, ARGV[1], tonumber(ARGV[2]), now, ARGV[1], hold_until)
limit_expire(base, definition)
return {'ok', now}
