-- _lib.lua: helpers shared by every jobd script; jobd/redis/scripts.py prepends this file to each script.
-- Time always comes from the Redis server (TIME), so workers with skewed clocks agree.
if redis.replicate_commands then redis.replicate_commands() end

local PRIORITY_SPAN = 4398046511104 -- 2^42: room for 4.4e12 enqueues per queue within a priority

-- Milliseconds since the epoch on the Redis server's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Score in the queued ZSET: higher priority first, then enqueue order. Formatted with %.0f because
-- tostring() keeps only 14 significant digits.
local function queue_score(priority, seq)
  return string.format('%.0f', (tonumber(seq) or 0) - (tonumber(priority) or 0) * PRIORITY_SPAN)
end

-- Wake one idle worker blocked on the queue's marker list (at most one marker waits there).
local function wake(wake_key)
  if redis.call('LLEN', wake_key) == 0 then
    redis.call('RPUSH', wake_key, '1')
  end
end

-- Groups (enqueue(..., group=)): a group's waiting jobs are in a ZSET of their own, and the
-- queue's 'turns' ZSET holds each group with waiting jobs once, scored like a job. The claim
-- takes from queued and turns in score order; a group that got a job goes to the back of turns
-- (a new enqueue number), so groups with work are served in turn, and a group's backlog delays
-- another group's job by one job, not by the backlog. These keys share the queue's hash tag and
-- are named from its queued key (<prefix>:{<queue>}:queued): queued:<group> (ZSET), turns
-- (ZSET group -> score), grouped (STR: jobs waiting in groups), seq, job:<id>.
local function queue_base(queued_key)
  return string.sub(queued_key, 1, -7)
end

-- Put job `id` of `group` (false or '': none) into the queue at `score`.
local function enqueue_ready(queued_key, id, score, group)
  if not group or group == '' then
    redis.call('ZADD', queued_key, score, id)
    return
  end
  local base = queue_base(queued_key)
  if redis.call('ZADD', base .. 'queued:' .. group, score, id) == 1 then
    redis.call('INCR', base .. 'grouped')
  end
  redis.call('ZADD', base .. 'turns', 'LT', score, group)
end

-- One job left its group's waiting jobs: count it, and drop the count with the last one (a
-- queue that no longer has grouped jobs keeps no key for them).
local function ungroup_one(base)
  if redis.call('DECR', base .. 'grouped') <= 0 then redis.call('DEL', base .. 'grouped') end
end

-- Put a job (back) into the queue at its original place.
local function make_ready(queued_key, job_key, id)
  local fields = redis.call('HMGET', job_key, 'priority', 'seq', 'group')
  enqueue_ready(queued_key, id, queue_score(fields[1] or 0, fields[2] or 0), fields[3])
  redis.call('HSET', job_key, 'status', 'queued')
end

-- Move up to `limit` due jobs from scheduled to queued; returns how many moved.
local function promote(scheduled_key, queued_key, job_prefix, now, limit)
  local due = redis.call('ZRANGE', scheduled_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local job_key = job_prefix .. id
    if redis.call('EXISTS', job_key) == 1 then
      make_ready(queued_key, job_key, id)
    end
  end
  if #due > 0 then
    redis.call('ZREM', scheduled_key, unpack(due))
  end
  return #due
end

-- Record that a worker touched the queue now. Returns the time since which the queue has been touched
-- without a gap longer than gap_ms: after a Redis pause or restart (or with no worker at all) that is
-- "now", and the reaper waits one lease before it trusts heartbeats again.
local function touch_activity(activity_key, now, gap_ms)
  local values = redis.call('HMGET', activity_key, 'last', 'since')
  local last, since = tonumber(values[1]), tonumber(values[2])
  if last == nil or since == nil or now - last > gap_ms then
    since = now
    redis.call('HSET', activity_key, 'since', since)
  end
  redis.call('HSET', activity_key, 'last', now)
  return since
end

-- Wake clients blocked in job.result(): only when one registered (the 'waiters' field), so a job that
-- nobody waits for costs nothing here.
local function notify_done(job_key, done_key, keep_ms)
  if redis.call('HEXISTS', job_key, 'waiters') == 1 then
    redis.call('RPUSH', done_key, '1')
    redis.call('PEXPIRE', done_key, math.max(keep_ms, 60000))
    redis.call('HDEL', job_key, 'waiters')
  end
end

-- Store the final state of a job: a TTL of keep_ms (0 = drop now) unless it stays as a dead letter.
local function keep_for(job_key, keep_ms)
  if keep_ms > 0 then
    redis.call('PEXPIRE', job_key, keep_ms)
  else
    redis.call('DEL', job_key)
  end
end

-- Store a new job unless a job with this id exists (deduplication by id): queued at its place in
-- the queue, or scheduled when it is due after now. Optional fields ('' = unset): max_tries, timeout
-- (ms), expires (ms after now), signature, group, cost (nil counts as ''). The caller wakes a
-- worker (once, however many jobs it stored). `seq_key` may be a function giving the job's number
-- in its queue (a batch takes its numbers with one INCRBY); with a `ready` table, a job ready
-- now and in no group is appended to it (score, id) for the caller's one ZADD (see zadd_all). A job of a workflow (flow.lua) passes `extra`
-- fields, and `waiting_key` when it waits for parents: it is then 'waiting', indexed there, and
-- not queued. Returns 1 and the new job's status, or 0 and the status of the job that exists.
local function store_job(queued_key, scheduled_key, seq_key, job_key, id, fn, payload, queue,
                         priority, max_tries, timeout, expires, now, due, signature, group, cost,
                         extra, waiting_key, ready)
  if redis.call('EXISTS', job_key) == 1 then
    return 0, redis.call('HGET', job_key, 'status') or 'unknown'
  end
  local seq
  if type(seq_key) == 'function' then seq = seq_key() else seq = redis.call('INCR', seq_key) end
  local status = 'queued'
  if waiting_key then
    status = 'waiting'
  elseif due > now then
    status = 'scheduled'
  end
  -- one HSET with every field: each redis.call costs the enqueue's round trip time
  local fields = {'id', id, 'function', fn, 'payload', payload, 'queue', queue,
    'priority', priority, 'seq', seq, 'tries', 0, 'lost', 0, 'enqueued_at', now, 'due_at', due,
    'status', status}
  if max_tries ~= '' then fields[#fields + 1] = 'max_tries'; fields[#fields + 1] = max_tries end
  if timeout ~= '' then fields[#fields + 1] = 'timeout'; fields[#fields + 1] = timeout end
  if expires ~= '' then
    fields[#fields + 1] = 'expires_at'; fields[#fields + 1] = now + tonumber(expires)
  end
  if signature ~= '' then fields[#fields + 1] = 'signature'; fields[#fields + 1] = signature end
  if group and group ~= '' then fields[#fields + 1] = 'group'; fields[#fields + 1] = group end
  if cost and cost ~= '' then fields[#fields + 1] = 'cost'; fields[#fields + 1] = cost end
  if extra then
    for _, value in ipairs(extra) do fields[#fields + 1] = value end
  end
  redis.call('HSET', job_key, unpack(fields))
  if status == 'waiting' then
    redis.call('ZADD', waiting_key, now, id)
  elseif status == 'scheduled' then
    redis.call('ZADD', scheduled_key, due, id)
  elseif ready and (not group or group == '') then
    ready[#ready + 1] = queue_score(priority, seq)
    ready[#ready + 1] = id
  else
    enqueue_ready(queued_key, id, queue_score(priority, seq), group)
  end
  return 1, status
end

-- Remove `id` from the dead set; true when it was a dead letter (status 'failed') that the caller may
-- retry or purge. A leftover member whose job is not failed is dropped from the set and reported false.
local function take_dead(dead_key, job_key, id)
  if not redis.call('ZSCORE', dead_key, id) then
    return false
  end
  redis.call('ZREM', dead_key, id)
  return redis.call('HGET', job_key, 'status') == 'failed'
end

-- Limits (docs/limits.md) ---------------------------------------------------------------------
-- A limit's keys are a base plus a role (see claim.lua); its definition is {rate count, rate ms,
-- cost count, cost ms, concurrency, per group}, a zero meaning "not limited by this".

-- Drop the starts and costs of `base` older than their window; returns the cost still spent.
local function limit_trim(base, definition, now)
  if definition[1] > 0 then
    redis.call('ZREMRANGEBYSCORE', base .. 'starts', '-inf', now - definition[2])
  end
  if definition[3] == 0 then return 0 end
  local spent = tonumber(redis.call('GET', base .. 'spent') or 0)
  local old = redis.call('ZRANGE', base .. 'costs', '-inf', now - definition[4], 'BYSCORE')
  if #old > 0 then
    for _, member in ipairs(old) do
      spent = spent - tonumber(string.match(member, '|(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', base .. 'costs', '-inf', now - definition[4])
    redis.call('SET', base .. 'spent', spent, 'PX', definition[4])
  end
  return spent
end

-- When the cost window of `base`, `spent` now, has room for `cost` more: the time the oldest
-- costs leave it, or -1 when the cost alone is above the limit.
local function cost_room_at(base, definition, spent, cost, now)
  if cost > definition[3] then return -1 end
  for _, entry in ipairs(redis.call('ZRANGE', base .. 'costs', 0, -1, 'WITHSCORES')) do
    if string.find(entry, '|', 1, true) then
      spent = spent - tonumber(string.match(entry, '|(%d+)$'))
    elseif spent + cost <= definition[3] then
      return tonumber(entry) + definition[4]
    end
  end
  return now + definition[4]
end

-- The key base of limit `name` (prefix: <prefix>:{<queue>}:limit:) for a job of `group`; a
-- per-group limit (`per_group` 1 or '1') has a base per group.
local function limit_base(prefix, name, per_group, group)
  local base = prefix .. name .. ':'
  if tostring(per_group) == '1' and group then base = base .. 'g:' .. group .. ':' end
  return base
end

-- What a limit has in use now: {paused, running, starts, spent}, its windows trimmed. Slots held
-- outside jobs (Client.limit) carry an expiry as their score and are dropped here once it
-- passed; a job's slot has the score +inf and goes back with its job. Within one script the
-- state stays true (the script is atomic): claim.lua reads it once per limit and keeps it.
local function limit_state(base, definition, now)
  local state = {paused = tonumber(redis.call('GET', base .. 'paused') or 0), running = 0, starts = 0}
  if definition[5] > 0 then
    redis.call('ZREMRANGEBYSCORE', base .. 'running', '-inf', now)
    state.running = redis.call('ZCARD', base .. 'running')
  end
  state.spent = limit_trim(base, definition, now)
  if definition[1] > 0 then state.starts = redis.call('ZCARD', base .. 'starts') end
  return state
end

-- When the limit of `base`, in `state`, lets something of `cost` start: nil = now, 0 = when a
-- slot is given back, -1 = never (the cost alone is above the limit), else a time (ms).
local function limit_allowed_at(state, base, definition, cost, now)
  if state.paused > now then return state.paused end
  if definition[5] > 0 and state.running >= definition[5] then return 0 end
  if definition[1] > 0 and state.starts >= definition[1] then
    if not state.rate_free then
      local oldest = redis.call('ZRANGE', base .. 'starts', 0, 0, 'WITHSCORES')
      state.rate_free = tonumber(oldest[2]) + definition[2]
    end
    return state.rate_free
  end
  if definition[3] > 0 and state.spent + cost > definition[3] then
    return cost_room_at(base, definition, state.spent, cost, now)
  end
  return nil
end

-- Record in the limit of `base` (and in `state`) a start of `cost` (member `start`) and, if it
-- has a concurrency, a slot for `holder` until `hold_until` (ms, or '+inf'); returns whether a
-- slot was taken. The windows' expiries are set once per script: limit_expire.
local function limit_take(state, base, definition, start, cost, now, holder, hold_until)
  state.taken = true
  if definition[1] > 0 then
    redis.call('ZADD', base .. 'starts', now, start)
    state.starts = state.starts + 1
  end
  if definition[3] > 0 then
    redis.call('ZADD', base .. 'costs', now, start .. '|' .. cost)
    redis.call('INCRBY', base .. 'spent', cost)
    state.spent = state.spent + cost
  end
  if definition[5] > 0 then
    redis.call('ZADD', base .. 'running', hold_until, holder)
    state.running = state.running + 1
    return true
  end
  return false
end

-- The windows of a limit that was taken from live one period after its last start.
local function limit_expire(base, definition)
  if definition[1] > 0 then redis.call('PEXPIRE', base .. 'starts', definition[2]) end
  if definition[3] > 0 then
    redis.call('PEXPIRE', base .. 'costs', definition[4])
    redis.call('PEXPIRE', base .. 'spent', definition[4])
  end
end

-- Give back `holder`'s slot of the limit of `base`; if it had one, one job the limit held goes
-- back to its place in the queue, so that a freed slot is taken at once.
local function free_slot(base, holder, queued_key, wake_key)
  if redis.call('ZREM', base .. 'running', holder) == 0 then return end
  local held = redis.call('ZPOPMIN', base .. 'held', 1)
  if #held > 0 then
    local queue = queue_base(queued_key)
    local group = redis.call('HGET', queue .. 'job:' .. held[1], 'group')
    enqueue_ready(queued_key, held[1], held[2], group)
    wake(wake_key)
    -- the queue's held index (see claim.lua) keeps only limits that hold jobs
    if redis.call('EXISTS', base .. 'held') == 0 then redis.call('ZREM', queue .. 'held', base) end
  end
end

-- Give back the concurrency slots a job holds (its 'slots' field: the key bases of its limits,
-- separated by spaces; false when it holds none).
local function release_slots(slots, job_key, id, queued_key, wake_key)
  if not slots then return end
  redis.call('HDEL', job_key, 'slots')
  for base in string.gmatch(slots, '%S+') do
    free_slot(base, id, queued_key, wake_key)
  end
end

-- Job events (docs/events.md) -----------------------------------------------------------------
-- A job's events are a STREAM beside its hash (<prefix>:{<queue>}:events:<id>), with ids 0-1,
-- 0-2 ... in order: field e (the event's name), t (ms), d (its data as JSON). The stream is on once
-- the job emitted or a client followed it: its hash's 'ev' field then counts the events written
-- (false while off), and the scripts that move the job add its lifecycle events. A job nobody
-- follows and that emits nothing thus costs one field read here, no stream.

-- The event stream of the job with hash `job_key` (its prefix ends in 'job:') and id `id`.
local function events_key(job_key, id)
  return string.sub(job_key, 1, #job_key - #id - 4) .. 'events:' .. id
end

-- SADD `members` to `key` in chunks: Lua's unpack() takes at most a few thousand values.
local function sadd_all(key, members)
  for first = 1, #members, 1000 do
    redis.call('SADD', key, unpack(members, first, math.min(first + 999, #members)))
  end
end

-- ZADD `pairs` ({score, member, ...}) to `key` in chunks, as sadd_all.
local function zadd_all(key, pairs)
  for first = 1, #pairs, 2000 do
    redis.call('ZADD', key, unpack(pairs, first, math.min(first + 1999, #pairs)))
  end
end

-- Append lifecycle event `name` with `data` (a table; nil: none) when the job's stream is on
-- (`ev`: its 'ev' field). Returns the new count, or false when the stream is off.
local function job_event(job_key, id, ev, name, data, now)
  if not ev then return false end
  local n = tonumber(ev) + 1
  local fields = {'e', name, 't', now}
  if data then
    fields[5] = 'd'
    fields[6] = cjson.encode(data)
  end
  redis.call('XADD', events_key(job_key, id), '0-' .. n, unpack(fields))
  redis.call('HSET', job_key, 'ev', n)
  return n
end

-- The data of a 'failed' or 'retrying' event from an error JSON {type, message, traceback}: no
-- traceback (followers show output, not stacks).
local function error_event(try, error_json, delay_ms)
  local ok, error = pcall(cjson.decode, error_json or '')
  local data = {try = tonumber(try)}
  if ok and type(error) == 'table' then
    data.error = error.type
    data.message = error.message
  end
  if delay_ms then data.delay = delay_ms / 1000 end
  return data
end

-- An ended job's stream lives as long as its record: `keep_ms` (a minute when the record goes at
-- once, so that followers read the end); a dead letter's stays with it, without a TTL.
local function keep_events(job_key, id, ev, keep_ms)
  if ev then
    redis.call('PEXPIRE', events_key(job_key, id), keep_ms > 0 and keep_ms or 60000)
  end
end

-- Workflows (docs/workflows.md) ---------------------------------------------------------------
-- A job enqueued with after=[...] waits (status 'waiting', in the queue's 'waiting' ZSET) until
-- every parent ended. Edges are "<queue> <id>" (neither holds a space): the child's waits:<id>
-- SET holds the parents it still waits for, a parent's dependants:<id> SET the children that have
-- not ended yet. A job with either has the field 'links'. When such a job ends, the script that
-- ends it adds its id to its queue's 'settled' ZSET (by when it ended) instead of giving it a
-- TTL: a worker then
-- tells its dependants (resolve.lua, one call per child: no O(n) script), detaches it from its
-- parents (detach.lua), and gives it its TTL once no dependant needs its result (done.lua).
-- Every step removes set members, so a step done twice changes nothing.

-- The key base (<prefix>:{<queue>}:) of the job with hash `job_key` and id `id`.
local function base_of(job_key, id)
  return string.sub(job_key, 1, #job_key - #id - 4)
end

-- A job with links ended: its graph work goes to the outbox, its TTL waits (keep_ms noted).
-- The entry's score is a new number of the queue's 'seq' counter at each end, so that a resolver
-- that settled an earlier end (settled.lua) does not remove the entry of a later one.
local function links_ended(job_key, id, keep_ms)
  local base = base_of(job_key, id)
  redis.call('ZADD', base .. 'settled', redis.call('INCR', base .. 'seq'), id)
  redis.call('HSET', job_key, 'keep_ms', keep_ms)
end

-- End a job as it ends (keep_ms after now, 0: at once) unless it has links (see links_ended);
-- its event stream (`ev`) goes with it.
local function keep_ended(job_key, id, links, ev, keep_ms)
  if links then
    links_ended(job_key, id, keep_ms)
  else
    keep_events(job_key, id, ev, keep_ms)
    keep_for(job_key, keep_ms)
  end
end

-- Fail a job that waits for a parent that failed or was aborted (after_failure = "fail"): it is
-- dead-lettered, so that `jobd dead retry` can run it once the parent is fixed.
local function fail_waiting(job_key, id, parent, parent_status, now)
  local base = base_of(job_key, id)
  local message = 'parent ' .. parent .. ' ' .. parent_status .. '; after_failure = "fail"'
  redis.call('HSET', job_key, 'status', 'failed', 'finished_at', now, 'error',
    cjson.encode({type = 'DependencyFailed', message = message}))
  redis.call('ZREM', base .. 'waiting', id)
  redis.call('DEL', base .. 'waits:' .. id)
  redis.call('ZADD', base .. 'dead', now, id)
  local ev = redis.call('HGET', job_key, 'ev')
  job_event(job_key, id, ev, 'failed',
    {try = 0, error = 'DependencyFailed', message = message}, now)
  links_ended(job_key, id, 0)
  notify_done(job_key, base .. 'done:' .. id, 60000)
end

-- A waiting job whose last parent ended goes to its queue (or to 'scheduled' when it was
-- enqueued with a delay that has not passed).
local function release_waiting(job_key, id, now)
  local base = base_of(job_key, id)
  redis.call('ZREM', base .. 'waiting', id)
  local due = tonumber(redis.call('HGET', job_key, 'due_at') or 0)
  if due > now then
    redis.call('HSET', job_key, 'status', 'scheduled')
    redis.call('ZADD', base .. 'scheduled', due, id)
  else
    make_ready(base .. 'queued', job_key, id)
  end
  wake(base .. 'wake')
end

-- An ended job that no dependant needs any more gets the TTL it was spared (keep_ms); a dead
-- letter keeps none, as any dead letter.
-- Not while the job's own end waits in 'settled': its entry still needs its record (to tell its
-- dependants and leave its parents), and settled.lua gives the TTL when done. A dead letter
-- purged while linked (dead_purge.lua left a record with 'purged') goes now.
local function keep_unneeded(job_key, id)
  local state = redis.call('HMGET', job_key, 'status', 'keep_ms', 'ev', 'purged')
  if not state[2] or redis.call('ZSCORE', base_of(job_key, id) .. 'settled', id) then return end
  if state[4] then
    redis.call('DEL', job_key, events_key(job_key, id))
  elseif state[1] == 'succeeded' or state[1] == 'aborted' then
    keep_events(job_key, id, state[3], tonumber(state[2]))
    keep_for(job_key, tonumber(state[2]))
  end
end

local JOB_ENDED = {succeeded = true, failed = true, aborted = true}

-- Link the child `child_edge` to the parent with hash `parent_key` and dependants set
-- `dependants_key`; returns the parent's status (false when the parent does not exist: nothing
-- is linked then). A parent that ended already keeps its record (PERSIST, its TTL noted as
-- keep_ms) until the child has ended, for parent_results().
local function link_parent(parent_key, dependants_key, child_edge)
  local state = redis.call('HMGET', parent_key, 'status', 'links')
  if not state[1] then return false end
  redis.call('SADD', dependants_key, child_edge)
  if not state[2] then redis.call('HSET', parent_key, 'links', 1) end
  if JOB_ENDED[state[1]] then
    local ttl = redis.call('PTTL', parent_key)
    if ttl > 0 then
      redis.call('PERSIST', parent_key)
      redis.call('HSETNX', parent_key, 'keep_ms', ttl)
    end
  end
  return state[1]
end
