-- claim.lua: hand up to N ready jobs of one queue to a worker, under a fresh fencing token.
-- Atomic so that a job is never given to two workers and never leaves 'queued' without an owner.
-- Promotes due scheduled jobs first, drops expired ones, dead-letters oversized payloads without
-- shipping them, and refreshes the worker's heartbeat (the lease of all its jobs).
-- Replay-safe: the worker sends a nonce per claim; a replayed call with the same nonce returns the jobs
-- the first call claimed instead of claiming more (which would orphan them).
-- KEYS[1] queued  KEYS[2] scheduled  KEYS[3] running  KEYS[4] workers  KEYS[5] owned:<worker> (SET)
-- KEYS[6] claim:<worker> (STR)  KEYS[7] wake  KEYS[8] activity  KEYS[9] dead
-- KEYS[10] job hash prefix (job ids are only known after popping them; same hash tag)
-- ARGV[1] worker id  ARGV[2] nonce  ARGV[3] max jobs  ARGV[4] lease ms  ARGV[5] activity gap ms
-- ARGV[6] max payload bytes  ARGV[7] promote limit
-- Returns {now, next due ms or '', token, {expired: id, function, ...}, {dead-lettered: id, function,
-- ...}, job, job, ...} with each job = {id, function, payload, tries, lost, max_tries, timeout,
-- enqueued_at, priority, due_at}.
local worker, nonce = ARGV[1], ARGV[2]
local token = worker .. ':' .. nonce
local now = now_ms()
local job_prefix = KEYS[10]
local fields = {'id', 'function', 'payload', 'tries', 'lost', 'max_tries', 'timeout', 'enqueued_at',
  'priority', 'due_at'}
touch_activity(KEYS[8], now, tonumber(ARGV[5]))
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), worker)

local function next_due()
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #first == 0 then return '' end
  return first[2]
end

local reply = {now, '', token, {}, {}}
local last = redis.call('GET', KEYS[6])
if last then
  local separator = string.find(last, '\n', 1, true)
  if separator and string.sub(last, 1, separator - 1) == nonce then
    for id in string.gmatch(string.sub(last, separator + 1), '[^\n]+') do
      local job_key = job_prefix .. id
      local state = redis.call('HMGET', job_key, 'status', 'token')
      if state[1] == 'running' and state[2] == token then
        reply[#reply + 1] = redis.call('HMGET', job_key, unpack(fields))
      end
    end
    reply[2] = next_due()
    return reply
  end
end

promote(KEYS[2], KEYS[1], job_prefix, now, tonumber(ARGV[7]))
local wanted = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[6])
local claimed_ids = {}
local rounds = 0
while #claimed_ids < wanted and rounds < 10 do
  rounds = rounds + 1
  local popped = redis.call('ZPOPMIN', KEYS[1], wanted - #claimed_ids)
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    local id = popped[i]
    local job_key = job_prefix .. id
    local state = redis.call('HMGET', job_key, 'status', 'expires_at', 'function')
    if state[1] == false then
      -- the hash is gone (purged by an operator): nothing to run
    elseif state[2] and tonumber(state[2]) <= now then
      redis.call('DEL', job_key)
      table.insert(reply[4], id)
      table.insert(reply[4], state[3] or '')
    elseif redis.call('HSTRLEN', job_key, 'payload') > max_bytes then
      local size = redis.call('HSTRLEN', job_key, 'payload')
      redis.call('HSET', job_key, 'status', 'failed', 'finished_at', now, 'error',
        cjson.encode({type = 'PayloadTooLarge',
          message = 'payload is ' .. size .. ' bytes, limit ' .. max_bytes}))
      redis.call('ZADD', KEYS[9], now, id)
      table.insert(reply[5], id)
      table.insert(reply[5], state[3] or '')
    else
      redis.call('HINCRBY', job_key, 'tries', 1)
      redis.call('HSET', job_key, 'status', 'running', 'started_at', now, 'token', token,
        'worker', worker)
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('SADD', KEYS[5], id)
      claimed_ids[#claimed_ids + 1] = id
      reply[#reply + 1] = redis.call('HMGET', job_key, unpack(fields))
    end
  end
end
redis.call('SET', KEYS[6], nonce .. '\n' .. table.concat(claimed_ids, '\n'), 'PX',
  2 * tonumber(ARGV[4]))
-- Work is left: pass the wake-up on to another idle worker, so a fleet scales out.
if #claimed_ids == wanted and redis.call('ZCARD', KEYS[1]) > 0 then wake(KEYS[7]) end
reply[2] = next_due()
return reply
