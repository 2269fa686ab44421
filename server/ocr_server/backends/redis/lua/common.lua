-- Shared by every script (prepended to each by scripts.py). Every script is called with
-- ARGV[1] = key prefix, ARGV[2] = now (Unix seconds, the caller's clock), ARGV[3] = the
-- stream's consumer group; its own arguments follow from ARGV[4].
-- Key names mirror keys.py; a task's keys carry its id as a hash tag.
local PREFIX = ARGV[1]
local NOW = tonumber(ARGV[2])
local NOW_TEXT = ARGV[2]
local GROUP = ARGV[3]
local PENDING = PREFIX .. ':pending'     -- zset: waiting tasks, score = admission order
local ACTIVE = PREFIX .. ':active'       -- set: started tasks (at most max_active)
local ROUND = PREFIX .. ':round'         -- zset: started tasks with pages left, score = last served
local SEQ = PREFIX .. ':seq'             -- counter for both orders
local EXPIRING = PREFIX .. ':expiring'   -- zset: "task|tenant|index entry", score = expiry
local JOBS = PREFIX .. ':jobs'           -- stream: page deliveries to worker hosts
local WATCHED = PREFIX .. ':watched'     -- hash: task -> watchers (for position updates)
local WORK = PREFIX .. ':work'           -- channel: "a page may be ready"

local FINAL = {['3'] = true, ['4'] = true, ['5'] = true}

local function tkey(task_id, kind)
  return PREFIX .. ':{' .. task_id .. '}:' .. kind
end

local function open_key(th) return PREFIX .. ':open:' .. th end         -- zset task -> expiry
local function index_key(th) return PREFIX .. ':tenant:' .. th end      -- zset (lex) for lists

-- The task's state, or nil when it is absent or expired (whether or not Redis dropped it).
local function live_state(task_id)
  local f = redis.call('HMGET', tkey(task_id, 'task'), 'state', 'expires')
  if not f[1] or not f[2] or tonumber(f[2]) <= NOW then return nil end
  return f[1]
end

local function queue_position(task_id)
  local rank = redis.call('ZRANK', PENDING, task_id)
  if rank then return rank + 1 end
  return 0
end

-- A snapshot of the record (every field as stored) and its queue position, to its watchers.
local function publish(task_id)
  local fields = redis.call('HGETALL', tkey(task_id, 'task'))
  local record = {}
  for i = 1, #fields, 2 do record[fields[i]] = fields[i + 1] end
  local message = cjson.encode({r = record, p = queue_position(task_id)})
  redis.call('PUBLISH', tkey(task_id, 'events'), message)
end

-- A task started: every watched task still waiting moved up (position-only updates).
local function publish_positions()
  local watched = redis.call('HKEYS', WATCHED)
  for _, task_id in ipairs(watched) do
    local rank = redis.call('ZRANK', PENDING, task_id)
    if rank then
      redis.call('PUBLISH', tkey(task_id, 'events'), cjson.encode({p = rank + 1}))
    end
  end
end

local function contains(list, value)
  for _, item in ipairs(list) do
    if tonumber(item) == tonumber(value) then return true end
  end
  return false
end

-- The task leaves scheduling: no more pages of it are handed out, its tenant's room is free.
local function unschedule(task_id)
  redis.call('ZREM', PENDING, task_id)
  redis.call('SREM', ACTIVE, task_id)
  redis.call('ZREM', ROUND, task_id)
  redis.call('DEL', tkey(task_id, 'todo'), tkey(task_id, 'flight'))
  local th = redis.call('HGET', tkey(task_id, 'task'), '_th')
  if th then redis.call('ZREM', open_key(th), task_id) end
end

local function ack(entry_id)
  if entry_id and entry_id ~= '' then
    redis.call('XACK', JOBS, GROUP, entry_id)
    redis.call('XDEL', JOBS, entry_id)
  end
end

-- End a task in a final state; its document goes unless it asked to be kept.
local function end_task(task_id, state, code, message)
  local key = tkey(task_id, 'task')
  redis.call('HSET', key, 'state', state, 'ended', NOW_TEXT)
  if code then redis.call('HSET', key, 'error_code', code, 'error_message', message) end
  unschedule(task_id)
  local f = redis.call('HMGET', key, 'keep_document', 'document_ref', '_assembling')
  if f[1] ~= '1' then redis.call('DEL', tkey(f[2], 'doc')) end
  ack(f[3])
  redis.call('HDEL', key, '_assembling')
  publish(task_id)
end

-- Put a page back at the front of its task (and the task back in the round, where it was).
local function requeue_page(task_id, page)
  local key = tkey(task_id, 'task')
  local todo = tkey(task_id, 'todo')
  redis.call('LPUSH', todo, page)
  redis.call('PEXPIREAT', todo, math.floor(tonumber(redis.call('HGET', key, 'expires')) * 1000))
  if redis.call('SISMEMBER', ACTIVE, task_id) == 1 then
    redis.call('ZADD', ROUND, 'NX', redis.call('HGET', key, '_served'), task_id)
  end
  redis.call('PUBLISH', WORK, task_id)
end

local function record_fields(task_id)
  return redis.call('HGETALL', tkey(task_id, 'task'))
end
