-- release.lua: give back a slot taken by acquire.lua (Client.limit), and let one job the limit
-- held back go back to its place in the queue.
-- Atomic so that the freed slot goes to the held job in the same step, as when a job finishes.
-- Replay-safe: a slot given back already is not there to give back again.
-- KEYS[1] the limit's key base  KEYS[2] queued of the limit's queue  KEYS[3] wake of that queue
-- ARGV[1] holder
-- Returns 1
free_slot(KEYS[1], ARGV[1], KEYS[2], KEYS[3])
return 1
