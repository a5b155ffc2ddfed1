-- enqueue.lua: store one or more jobs of one queue, deduplicated by job id.
-- Atomic so that a job is either fully stored and findable by a worker, or not at all. Replay-safe: the
-- client generates job ids, so a command re-sent after a lost reply finds the job and creates nothing.
-- KEYS[1] queued (ZSET)  KEYS[2] scheduled (ZSET)  KEYS[3] seq (STR)  KEYS[4] wake (LIST)
-- KEYS[5..] one job hash per job, in ARGV order
-- ARGV[1] queue name  ARGV[2] priority (int)  ARGV[3] max_tries ('' = worker default)
-- ARGV[4] timeout ms ('' = worker default)  ARGV[5] delay ms ('' = none)  ARGV[6] at, epoch ms ('' = none)
-- ARGV[7] expires, ms after enqueue ('' = never)  ARGV[8] group ('' = none)
-- ARGV[9] cost for the job's cost limits ('' = 1)  ARGV[10] headers JSON (trace context; '' =
-- none), or '*': each job has its own, as a fifth value below (calls of traced producers that
-- were coalesced)  ARGV[11..] per job: id, function, payload, signature ('' = unsigned)
-- [, headers ('' = none)]
-- Returns a flat list: per job 1 (created) or 0 (existed), then its status.
local now = now_ms()
local due = now
if ARGV[5] ~= '' then
  due = now + tonumber(ARGV[5])
elseif ARGV[6] ~= '' then
  due = tonumber(ARGV[6])
end
local result = {}
local woken = false
local per_job = ARGV[10] == '*'
local stride = per_job and 5 or 4
local shared = nil
if not per_job and ARGV[10] ~= '' then shared = {'headers', ARGV[10]} end
-- the new jobs' numbers in the queue: read once, written once (a replay creates nothing, and
-- leaves the counter as it was)
local seq = nil
local function next_seq()
  seq = (seq or tonumber(redis.call('GET', KEYS[3]) or 0)) + 1
  return seq
end
local ready = {}
for i = 5, #KEYS do
  local base = 11 + (i - 5) * stride
  local extra = shared
  if per_job and ARGV[base + 4] ~= '' then extra = {'headers', ARGV[base + 4]} end
  local created, status = store_job(KEYS[1], KEYS[2], next_seq, KEYS[i], ARGV[base], ARGV[base + 1],
    ARGV[base + 2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[7], now, due, ARGV[base + 3], ARGV[8],
    ARGV[9], extra, nil, ready)
  if created == 1 then woken = true end
  result[#result + 1] = created
  result[#result + 1] = status
end
if seq then redis.call('SET', KEYS[3], seq) end
zadd_all(KEYS[1], ready)
-- Also for a deferred job: an idle worker wakes, learns the new earliest due time and sleeps until then.
if woken then wake(KEYS[4]) end
return result
