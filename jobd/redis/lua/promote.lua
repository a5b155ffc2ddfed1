-- promote.lua: move due scheduled jobs of a queue to queued (claim.lua also does this before it pops).
-- Atomic so that a job is in exactly one of the two sets. Replay-safe: a promoted job is no longer due.
-- KEYS[1] scheduled  KEYS[2] queued  KEYS[3] wake  KEYS[4] job hash prefix (ids come from KEYS[1])
-- ARGV[1] max jobs to move
-- Returns the number of jobs moved
local moved = promote(KEYS[1], KEYS[2], KEYS[4], now_ms(), tonumber(ARGV[1]))
if moved > 0 then wake(KEYS[3]) end
return moved
