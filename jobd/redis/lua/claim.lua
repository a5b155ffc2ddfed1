-- claim.lua: hand up to N ready jobs of one queue to a worker, under a fresh fencing token.
-- Atomic so that a job is never given to two workers and never leaves 'queued' without an owner.
-- Promotes due scheduled jobs first, drops expired ones, dead-letters oversized payloads without
-- shipping them, and refreshes the worker's heartbeat (the lease of all its jobs) when it runs
-- low. A job that no producer can have written (an id that is not printable UTF-8 without
-- spaces, or a 'tries' that is not a count: forged or corrupted in Redis) is dead-lettered here
-- too, so that it can neither break this script half-way nor reach the worker.
-- Replay-safe: the worker sends a nonce per claim; a replayed call with the same nonce returns the jobs
-- the first call claimed instead of claiming more (which would orphan them).
-- KEYS[1] queued  KEYS[2] scheduled  KEYS[3] running  KEYS[4] workers  KEYS[5] owned:<worker> (SET)
-- KEYS[6] claim:<worker> (STR)  KEYS[7] wake  KEYS[8] activity  KEYS[9] dead
-- KEYS[10] job hash prefix (job ids are only known after popping them; same hash tag)
-- KEYS[11] stop:<worker> (LIST): present once the worker stops; the script deletes it and claims
-- nothing new. A stopping worker pushes it to end a blocking wait that is pipelined with this claim.
-- ARGV[1] worker id  ARGV[2] nonce  ARGV[3] max jobs  ARGV[4] lease ms  ARGV[5] activity gap ms
-- ARGV[6] max payload bytes  ARGV[7] promote limit
-- Limits (docs/limits.md): a job whose function names limits starts only when each allows it;
-- otherwise it is held, uncharged, in the limit's held set (scored by its place in the queue)
-- and comes back when the limit frees: at once when a slot is given back (release_slots), at the
-- time the held index says for a rate, a cost or a pause (checked by every claim).
-- KEYS[12] limit key prefix: a limit's keys are the prefix, its name, ':', for a per-group limit
-- 'g:' .. group .. ':', then a role: running (ZSET id -> start, the concurrency slots), starts
-- (ZSET start -> time), costs (ZSET start|cost -> time), spent (STR, the sum of costs), paused
-- (STR, until when, ms), held (ZSET id -> queue score); for a per-group limit also
-- <name>:groups (ZSET group -> last start, for `jobd limits`)
-- KEYS[13] held index (ZSET): base of a limit with held jobs -> when to try them again (ms)
-- ARGV[8] the limits of this queue's functions as JSON ('' = none): {"f": {function: [names]},
-- "l": {name: [rate count, rate ms, cost count, cost ms, concurrency, per group 0/1]}}
-- Returns {now, next due ms or '', token, {expired: id, function, ...}, {dead-lettered: id, function,
-- reason ('payload_too_large', 'invalid_job' or 'cost_above_limit'), ...}, {held: id, function,
-- limit, ...}, {started after a limit held them: limit, ms held, ...}, job, job, ...} with each
-- job = {id, function, payload, tries, lost, max_tries, timeout, enqueued_at, priority, due_at,
-- signature, links (set for a job of a workflow), headers (trace context JSON)}.
-- A job whose event stream is on (docs/events.md) gets its 'started' event there (or 'failed'
-- when dead-lettered here); an expired job's stream goes with it.
local worker, nonce = ARGV[1], ARGV[2]
local token = worker .. ':' .. nonce
local now = now_ms()
local job_prefix = KEYS[10]
-- the reply's fields of a job (1 to 13), then what the claim judges it by: one read per job
local fields = {'id', 'function', 'payload', 'tries', 'lost', 'max_tries', 'timeout', 'enqueued_at',
  'priority', 'due_at', 'signature', 'links', 'headers', 'status', 'expires_at', 'ev'}
local REPLY_FIELDS = 13
-- The worker's heartbeat (and the queue's activity) is renew's job, every lease/3: a claim
-- refreshes it only when it has less than half a lease left, or is gone (reaped: back at once).
local beat = redis.call('ZSCORE', KEYS[4], worker)
if not beat or tonumber(beat) - now < tonumber(ARGV[4]) / 2 then
  touch_activity(KEYS[8], now, tonumber(ARGV[5]))
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), worker)
end

-- Whether `s` is well-formed UTF-8 (as Python's strict decoder judges it: no overlong forms, no
-- surrogates, nothing above U+10FFFF).
local function utf8_valid(s)
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    if c < 128 then
      i = i + 1
    else
      local len, low, high = 0, 128, 191
      if c >= 194 and c <= 223 then len = 2
      elseif c >= 224 and c <= 239 then
        len = 3
        if c == 224 then low = 160 elseif c == 237 then high = 159 end
      elseif c >= 240 and c <= 244 then
        len = 4
        if c == 240 then low = 144 elseif c == 244 then high = 143 end
      else
        return false
      end
      local second = string.byte(s, i + 1)
      if not second or second < low or second > high then return false end
      for j = i + 2, i + len - 1 do
        local byte = string.byte(s, j)
        if not byte or byte < 128 or byte > 191 then return false end
      end
      i = i + len
    end
  end
  return true
end

-- Why a popped job cannot be handed out, or nil. The worker checks the rest of the job rule.
-- The common case first, as one cheap scan: an id of printable ASCII and a count as enqueued.
local function invalid_job(id, tries)
  if #id == 0 or #id > 800 or (string.find(id, '[^!-~]') and (string.find(id, '[%z\1-\32\127]')
      or not utf8_valid(id))) then
    return 'job id is not printable UTF-8 text without spaces'
  end
  if tries and tries ~= '0' and not string.find(tries, '^%d+$') then
    return "field 'tries' is not a count"
  end
  return nil
end

local reply_dead = {}
local function dead_letter(job_key, id, fn, error_type, message, reason)
  redis.call('HSET', job_key, 'status', 'failed', 'finished_at', now, 'error',
    cjson.encode({type = error_type, message = message}))
  redis.call('ZADD', KEYS[9], now, id)
  local counts = redis.call('HMGET', job_key, 'ev', 'tries', 'links')
  job_event(job_key, id, counts[1], 'failed',
    {try = tonumber(counts[2]), error = error_type, message = message}, now)
  if counts[3] then links_ended(job_key, id, 0) end
  table.insert(reply_dead, id)
  table.insert(reply_dead, fn or '')
  table.insert(reply_dead, reason)
end

-- `first`: the earliest scheduled job ({id, score} or {}) when known, else nil (read here)
local function next_due(first)
  first = first or redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local due = first[2]
  if ARGV[8] ~= '' then
    local held = redis.call('ZRANGE', KEYS[13], 0, 0, 'WITHSCORES')
    if held[2] and (not due or tonumber(held[2]) < tonumber(due)) then due = held[2] end
  end
  return due or ''
end

local reply = {now, '', token, {}, reply_dead, {}, {}}
local last = redis.call('GET', KEYS[6])
if last then
  local separator = string.find(last, '\n', 1, true)
  if separator and string.sub(last, 1, separator - 1) == nonce then
    for id in string.gmatch(string.sub(last, separator + 1), '[^\n]+') do
      local job_key = job_prefix .. id
      local state = redis.call('HMGET', job_key, 'status', 'token')
      if state[1] == 'running' and state[2] == token then
        local row = redis.call('HMGET', job_key, unpack(fields, 1, REPLY_FIELDS))
        row[1] = id
        reply[#reply + 1] = row
      end
    end
    reply[2] = next_due()
    return reply
  end
end

if redis.call('DEL', KEYS[11]) == 1 then
  redis.call('SET', KEYS[6], nonce .. '\n', 'PX', 2 * tonumber(ARGV[4])) -- a replay takes nothing
  -- the wait may have popped a wake marker meant for a job: pass it on to another worker
  if redis.call('ZCARD', KEYS[1]) > 0 or redis.call('EXISTS', queue_base(KEYS[1]) .. 'turns') == 1 then
    wake(KEYS[7])
  end
  reply[2] = next_due()
  return reply
end

-- the earliest scheduled job tells both whether any came due and, if none did, the next due time
local first_scheduled = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first_scheduled[2] and tonumber(first_scheduled[2]) <= now then
  promote(KEYS[2], KEYS[1], job_prefix, now, tonumber(ARGV[7]))
  first_scheduled = nil
end
local wanted = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[6])

-- Limits ------------------------------------------------------------------------------------------
local spec = nil
-- base of a limit -> when its held jobs may be tried again: false until a job is held again
-- here (see settle_held_index); only bases this claim let go of or held jobs in
local next_try = {}
if ARGV[8] ~= '' then spec = cjson.decode(ARGV[8]) end
-- Held jobs whose limit may allow them now go back to their places, to be judged again below;
-- also when this worker enforces no limit here any more (the limit left the configuration while
-- it held jobs): they then start as any job.
local base = queue_base(KEYS[1])
local turns = base .. 'turns'
-- whether limits hold jobs here (KEYS[13]) and whether groups take turns: one read for both
local held_or_turns = redis.call('EXISTS', KEYS[13], turns) > 0
if spec or (held_or_turns and redis.call('EXISTS', KEYS[13]) == 1) then
  for _, base in ipairs(redis.call('ZRANGE', KEYS[13], '-inf', now, 'BYSCORE', 'LIMIT', 0, 20)) do
    local back = redis.call('ZPOPMIN', base .. 'held', wanted)
    for i = 1, #back, 2 do
      local group = redis.call('HGET', job_prefix .. back[i], 'group')
      enqueue_ready(KEYS[1], back[i], back[i + 1], group)
    end
    next_try[base] = false
  end
end

-- After the claim: each limit with held jobs left is looked at again when the earliest of the
-- jobs held here may start, or at once when every job let go of here started (the limit may
-- have room for the rest); a limit that holds nothing leaves the index.
local function settle_held_index()
  for base, at in pairs(next_try) do
    if redis.call('EXISTS', base .. 'held') == 0 then
      redis.call('ZREM', KEYS[13], base)
    else
      redis.call('ZADD', KEYS[13], at or now, base)
    end
  end
end

-- What this claim knows of each limit it looked at (see limit_state), so that a batch of jobs
-- of one limit costs a few reads, not a few per job: base -> state (and its definition).
local known = {}

local function allowed_at(base, definition, cost)
  local state = known[base]
  if not state then
    state = limit_state(base, definition, now)
    state.definition = definition
    known[base] = state
  end
  return limit_allowed_at(state, base, definition, cost, now)
end

-- Take what a starting job uses of the limit of `base`; returns whether it holds a slot (kept
-- until its job gives it back: see release_slots).
local function take(base, definition, id, cost, name, group)
  if definition[6] == 1 and group then
    local groups = KEYS[12] .. name .. ':groups'
    redis.call('ZADD', groups, now, group)
    redis.call('PEXPIRE', groups, math.max(definition[2], definition[4], 2 * tonumber(ARGV[4])))
  end
  return limit_take(known[base], base, definition, token .. ':' .. id, cost, now, id, '+inf')
end

local function expire_taken()
  for base, state in pairs(known) do
    if state.taken then limit_expire(base, state.definition) end
  end
end

-- Judge a popped job against the limits of its function: true if it may start (its limits
-- taken and its slots recorded on it), false if it was held or dead-lettered here.
local function admit(job_key, id, fn, score)
  local names = spec['f'][fn]
  if not names then return true end
  local extra = redis.call('HMGET', job_key, 'group', 'cost', 'held', 'held_since')
  local group, cost = extra[1], tonumber(extra[2]) or 1
  local bases = {}
  for i, name in ipairs(names) do
    local definition = spec['l'][name]
    local base = limit_base(KEYS[12], name, definition[6], group)
    bases[i] = base
    local at = allowed_at(base, definition, cost)
    if at == -1 then
      dead_letter(job_key, id, fn, 'CostAboveLimit', 'cost ' .. cost .. ' is above limit ' .. name
        .. ' (' .. definition[3] .. ' per ' .. definition[4] .. ' ms): it can never start',
        'cost_above_limit')
      return false
    elseif at ~= nil then
      redis.call('ZADD', base .. 'held', score, id)
      if extra[3] ~= base then redis.call('HSET', job_key, 'held', base) end
      if not extra[4] then redis.call('HSET', job_key, 'held_since', now) end
      -- a slot wakes the held job itself; the index is only the fallback, one lease on
      if at == 0 then at = now + tonumber(ARGV[4]) end
      if next_try[base] == nil then -- not let go of here: other jobs may be due sooner
        next_try[base] = math.min(at, tonumber(redis.call('ZSCORE', KEYS[13], base) or at))
      else
        next_try[base] = math.min(at, next_try[base] or at)
      end
      table.insert(reply[6], id)
      table.insert(reply[6], fn)
      table.insert(reply[6], name)
      return false
    end
  end
  local slots = {}
  for i, name in ipairs(names) do
    if take(bases[i], spec['l'][name], id, cost, name, group) then
      slots[#slots + 1] = bases[i]
    end
  end
  if #slots > 0 then
    redis.call('HSET', job_key, 'slots', table.concat(slots, ' '))
  end
  if extra[3] then
    redis.call('HDEL', job_key, 'held', 'held_since')
    local name = string.match(string.sub(extra[3], string.len(KEYS[12]) + 1), '^[^:]+')
    table.insert(reply[7], name)
    table.insert(reply[7], now - (tonumber(extra[4]) or now))
  end
  return true
end

-- Up to `count` jobs in queue order across queued and the groups' turns (see enqueue_ready):
-- {id, score, id, score, ...}. A group that gives a job goes to the back of the turns.
local function pop_in_turn(count)
  local popped = {}
  while #popped < 2 * count do
    local job = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local turn = redis.call('ZRANGE', turns, 0, 0, 'WITHSCORES')
    if #turn == 0 or (#job > 0 and tonumber(job[2]) <= tonumber(turn[2])) then
      if #job == 0 then break end
      redis.call('ZREM', KEYS[1], job[1])
    else
      local group_key = base .. 'queued:' .. turn[1]
      job = redis.call('ZPOPMIN', group_key, 1)
      local after = redis.call('ZRANGE', group_key, 0, 0)
      if #after > 0 then
        local priority = redis.call('HGET', job_prefix .. after[1], 'priority')
        redis.call('ZADD', turns, queue_score(priority or 0, redis.call('INCR', base .. 'seq')),
          turn[1])
      else
        redis.call('ZREM', turns, turn[1])
      end
      if #job > 0 then ungroup_one(base) end
    end
    if #job > 0 then
      popped[#popped + 1] = job[1]
      popped[#popped + 1] = job[2]
    end
  end
  return popped
end

-- (held jobs let go of above may have opened turns)
local in_turn = (held_or_turns or next(next_try) ~= nil) and redis.call('EXISTS', turns) == 1
local claimed_ids = {}
local rounds = 0
while #claimed_ids < wanted and rounds < 10 do
  rounds = rounds + 1
  local popped
  if in_turn then
    popped = pop_in_turn(wanted - #claimed_ids)
  else
    popped = redis.call('ZPOPMIN', KEYS[1], wanted - #claimed_ids)
  end
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    local id = popped[i]
    local job_key = job_prefix .. id
    local row = redis.call('HMGET', job_key, unpack(fields))
    local status, expires_at, ev = row[14], tonumber(row[15]), row[16]
    local fn, payload = row[2], row[3]
    local invalid = status and invalid_job(id, row[4])
    if status == false then
      -- the hash is gone (purged by an operator): nothing to run
    elseif invalid then
      dead_letter(job_key, id, fn, 'InvalidJob', 'cannot run this job: ' .. invalid,
        'invalid_job')
    elseif spec and status ~= 'queued' then
      -- not waiting any more (aborted while it was held back by a limit): nothing to run
    elseif expires_at and expires_at <= now and row[12] then
      -- a job of a workflow that expired: its dependants are told it was aborted
      redis.call('HSET', job_key, 'status', 'aborted', 'finished_at', now)
      links_ended(job_key, id, 3600000)
      table.insert(reply[4], id)
      table.insert(reply[4], fn or '')
    elseif expires_at and expires_at <= now then
      redis.call('DEL', job_key)
      if ev then redis.call('DEL', events_key(job_key, id)) end
      table.insert(reply[4], id)
      table.insert(reply[4], fn or '')
    elseif payload and #payload > max_bytes then
      dead_letter(job_key, id, fn, 'PayloadTooLarge',
        'payload is ' .. #payload .. ' bytes, limit ' .. max_bytes, 'payload_too_large')
    elseif spec and not admit(job_key, id, fn, popped[i + 1]) then
      -- held back by a limit, or dead-lettered: it did not start
    else
      local tries = (tonumber(row[4]) or 0) + 1
      redis.call('HSET', job_key, 'tries', tries, 'status', 'running', 'started_at', now,
        'token', token, 'worker', worker)
      job_event(job_key, id, ev, 'started', {try = tries}, now)
      claimed_ids[#claimed_ids + 1] = id
      row[1] = id -- the id the job is known by, whatever its hash says
      row[4] = tries
      row[14], row[15], row[16] = nil, nil, nil
      reply[#reply + 1] = row
    end
  end
end
-- the running set and this worker's owned set, once for all jobs claimed (ids: no spaces)
if #claimed_ids > 0 then
  local started = {}
  for i, id in ipairs(claimed_ids) do
    started[2 * i - 1] = now
    started[2 * i] = id
  end
  for first = 1, #claimed_ids, 1000 do
    local last = math.min(first + 999, #claimed_ids)
    redis.call('ZADD', KEYS[3], unpack(started, 2 * first - 1, 2 * last))
    redis.call('SADD', KEYS[5], unpack(claimed_ids, first, last))
  end
end
settle_held_index()
expire_taken()
redis.call('SET', KEYS[6], nonce .. '\n' .. table.concat(claimed_ids, '\n'), 'PX',
  2 * tonumber(ARGV[4]))
-- Work is left: pass the wake-up on to another idle worker, so a fleet scales out.
if #claimed_ids == wanted
    and (redis.call('ZCARD', KEYS[1]) > 0
      or ((in_turn or next(next_try) ~= nil) and redis.call('EXISTS', turns) == 1)) then
  wake(KEYS[7])
end
reply[2] = next_due(first_scheduled)
return reply
