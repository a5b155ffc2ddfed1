-- link.lua: link a job of a flow stored over several queues (Redis Cluster) to a parent in
-- another queue, once every share of the graph is stored (see flow.lua and jobd/client/flows.py):
-- the child joins the parent's dependants, and a parent that ended already keeps its record
-- until the child has ended.
-- Atomic so that the parent cannot end between the look at its status and the link (it would
-- then never tell this child). Replay-safe: the link is a set member.
-- KEYS[1] the parent's hash  KEYS[2] its dependants set
-- ARGV[1] the child's edge ("<queue> <id>")
-- Returns the parent's status, or false when it does not exist (nothing was linked)
return link_parent(KEYS[1], KEYS[2], ARGV[1])
