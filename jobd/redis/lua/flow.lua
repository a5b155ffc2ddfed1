-- flow.lua: store jobs that wait for other jobs (enqueue(after=...), client.flow()): every job of
-- the graph, or none when a parent it names does not exist. A job whose parents all ended is
-- queued at once (or dead-lettered when one failed and its after_failure is "fail"); the others
-- wait (see _lib.lua, Workflows). A parent that already ended is kept (PERSIST) until its new
-- dependant has ended, for parent_results().
-- Atomic so that no job of the graph can start before the whole graph is stored, and no parent
-- can end between the look at its status and the link to it. Replay-safe: jobs are deduplicated
-- by id (an existing job is neither stored again nor linked), and links are set members.
-- Its keys may span queues. A graph over several queues on Redis Cluster, and a large graph
-- anywhere, is stored in parts instead: one queue and a few hundred jobs per call, each job held
-- by the flow's gate (ARGV[3]), the links made by the client (link.lua), and the gate lifted once
-- every part is stored (see jobd/client/flows.py and ungate.lua): no call is long.
-- KEYS[1] the hash of the graph's first job, KEYS[2..] those of the others, in the order of
-- ARGV[2] (other keys are named from ARGV[1]: they share the hash tag of their job's queue)
-- ARGV[1] key prefix  ARGV[2] the graph as JSON, every parent in it before its children: per job
-- [queue, id, function, payload, signature, priority, max_tries, timeout ms, delay ms, at ms,
-- expires ms, group, cost ('' = unset), after_failure ('fail' or 'run'), parents [[queue, id]],
-- headers JSON ('' = none)]
-- ARGV[3] the flow's gate ('' = none): each new job also waits for the edge "~ <gate>", is
-- indexed in its queue's 'gated' ZSET and notes the gate in its field 'gate'
-- ARGV[4] '1' when the call holds a part of a graph stored in parts: parents are neither checked
-- nor linked nor added to the job's waits here (the client does it with wait.lua and link.lua,
-- while the gate holds the job)
-- Returns {'ok', created (1 or 0), status, ...} per job, or {'missing', queue, id} when that
-- parent is neither stored nor in the graph (nothing was stored)
local prefix = ARGV[1]
local graph = cjson.decode(ARGV[2])
local gate = ARGV[3] or ''
local link_here = ARGV[4] ~= '1'
local now = now_ms()
local ENDED = JOB_ENDED

local function base_for(queue)
  return prefix .. ':{' .. queue .. '}:'
end

local in_graph = {}
for _, job in ipairs(graph) do in_graph[job[1] .. ' ' .. job[2]] = true end

for _, job in ipairs(graph) do
  for _, parent in ipairs(job[15]) do
    if link_here and not in_graph[parent[1] .. ' ' .. parent[2]]
        and redis.call('EXISTS', base_for(parent[1]) .. 'job:' .. parent[2]) == 0 then
      return {'missing', parent[1], parent[2]}
    end
  end
end

-- Link `child` (an edge) to the parent `parent` ({queue, id}); returns the parent's status.
local function link(parent, child)
  local parent_base = base_for(parent[1])
  return link_parent(parent_base .. 'job:' .. parent[2], parent_base .. 'dependants:' .. parent[2],
    child)
end

local reply = {'ok'}
local wakes = {}
for i, job in ipairs(graph) do
  local queue, id = job[1], job[2]
  local base = base_for(queue)
  local job_key = KEYS[i]
  if redis.call('EXISTS', job_key) == 1 then
    reply[#reply + 1] = 0
    reply[#reply + 1] = redis.call('HGET', job_key, 'status') or 'unknown'
  else
    local edge = queue .. ' ' .. id
    local waits, failed, failed_status = {}, nil, nil
    -- stored in parts: the client adds the job's waits (wait.lua) and links it (link.lua)
    for _, parent in ipairs(link_here and job[15] or {}) do
      local status = link(parent, edge)
      if not ENDED[status] then
        waits[#waits + 1] = parent[1] .. ' ' .. parent[2]
      elseif status ~= 'succeeded' and job[14] == 'fail' and not failed then
        failed, failed_status = parent[1] .. ' ' .. parent[2], status
      end
    end
    local due = now
    if job[9] ~= '' then
      due = now + tonumber(job[9])
    elseif job[10] ~= '' then
      due = tonumber(job[10])
    end
    local extra = nil
    if #job[15] > 0 then
      extra = {'links', 1, 'parents', cjson.encode(job[15]), 'after_failure', job[14]}
    end
    if job[16] and job[16] ~= '' then
      extra = extra or {}
      extra[#extra + 1] = 'headers'
      extra[#extra + 1] = job[16]
    end
    if gate ~= '' then
      waits[#waits + 1] = '~ ' .. gate
      extra = extra or {}
      extra[#extra + 1] = 'gate'
      extra[#extra + 1] = gate
      redis.call('ZADD', base .. 'gated', now, id)
    end
    local waiting_key = nil
    if #waits > 0 or failed then waiting_key = base .. 'waiting' end
    local _, status = store_job(base .. 'queued', base .. 'scheduled', base .. 'seq', job_key, id,
      job[3], job[4], queue, job[6], job[7], job[8], job[11], now, due, job[5], job[12], job[13],
      extra, waiting_key)
    if failed then
      fail_waiting(job_key, id, failed, failed_status, now)
      status = 'failed'
    elseif #waits > 0 then
      sadd_all(base .. 'waits:' .. id, waits)
    else
      wakes[base .. 'wake'] = true
    end
    reply[#reply + 1] = 1
    reply[#reply + 1] = status
  end
end
for wake_key in pairs(wakes) do wake(wake_key) end
return reply
