-- wait.lua: add parents to the waits of a job of a flow stored in parts (see flow.lua and
-- jobd/client/flows.py), a few hundred per call, before the client links them (link.lua): a parent
-- that ends in between is then told about its child, or found ended by link.lua and resolved.
-- Atomic as a single SADD; the job cannot start meanwhile, as the flow's gate holds it.
-- Replay-safe: set members.
-- KEYS[1] the job's waits set
-- ARGV[1..] the parents' edges ("<queue> <id>")
-- Returns the number of edges added
return redis.call('SADD', KEYS[1], unpack(ARGV))
