-- The page a free worker of consumer ARGV[4] runs next, delivered to it through the stream.
-- ARGV[5] max started tasks, [6] reclaim min-idle in ms (0: do not look now),
-- [7] message template for a page lost twice (one %d: the page number).
-- First a page whose worker host stopped heartbeating (XPENDING IDLE, XCLAIM: its delivery
-- moves here), then fair share: up to max_active tasks started in admission order, each free
-- worker serving the started task that was served least recently (it then goes to the back).
-- Returns {} for nothing, or {kind, entry id, task id, page, attempt, record fields} with
-- kind 'page' or 'assemble' (every page is stored but the result was never built: its host
-- died in between).
local consumer, max_active = ARGV[4], tonumber(ARGV[5])
local min_idle, lost_twice = tonumber(ARGV[6]), ARGV[7]

local function deliver(task_id, page, attempt)
  local id = redis.call('XADD', JOBS, '*', 'task', task_id, 'page', page)
  local got = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', 1, 'STREAMS', JOBS, '>')
  local entry = got[1][2][1]
  if entry[1] ~= id then  -- an older undelivered entry (never left behind, but be safe)
    redis.call('XACK', JOBS, GROUP, entry[1])
    redis.call('XDEL', JOBS, entry[1])
  end
  return id
end

local function reclaim()
  local idle = redis.call('XPENDING', JOBS, GROUP, 'IDLE', min_idle, '-', '+', 1)
  if not idle[1] then return nil end
  local id = idle[1][1]
  local claimed = redis.call('XCLAIM', JOBS, GROUP, consumer, min_idle, id)
  local entry = claimed[1]
  if not entry or not entry[2] then  -- deleted meanwhile
    redis.call('XACK', JOBS, GROUP, id)
    return false
  end
  local f = {}
  for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
  local task_id, page = f['task'], tonumber(f['page'])
  local state = live_state(task_id)
  if not state or FINAL[state] then
    ack(id)
    return false
  end
  local key = tkey(task_id, 'task')
  if redis.call('HEXISTS', tkey(task_id, 'pages'), page) == 1 then
    -- finished already: either every page is stored and the result was never built, or
    -- the late host finished it after all
    if redis.call('LLEN', tkey(task_id, 'todo')) == 0
        and redis.call('SCARD', tkey(task_id, 'flight')) == 0 then
      redis.call('HSET', key, '_assembling', id)
      return {'assemble', id, task_id, page, 1, record_fields(task_id)}
    end
    ack(id)
    return false
  end
  local retried = cjson.decode(redis.call('HGET', key, 'retried_pages'))
  if contains(retried, page) then
    ack(id)
    end_task(task_id, '4', 10, string.format(lost_twice, page))
    return false
  end
  retried[#retried + 1] = page
  redis.call('HSET', key, 'retried_pages', cjson.encode(retried))
  return {'page', id, task_id, page, 2, record_fields(task_id)}
end

if min_idle > 0 then
  for _ = 1, 10 do
    local found = reclaim()
    if found == nil then break end
    if found then return found end
  end
end

for _ = 1, 1000 do
  local first = redis.call('ZRANGE', ROUND, 0, 0)
  local task_id = first[1]
  if redis.call('ZCARD', PENDING) > 0
      and (not task_id or redis.call('SCARD', ACTIVE) < max_active) then
    local started = redis.call('ZPOPMIN', PENDING)[1]
    local joined = redis.call('INCR', SEQ)  -- joins the round at the back
    redis.call('SADD', ACTIVE, started)
    redis.call('ZADD', ROUND, joined, started)
    redis.call('HSET', tkey(started, 'task'), '_served', joined)
    task_id = task_id or started
  end
  if not task_id then return {} end
  local state = live_state(task_id)
  local todo = tkey(task_id, 'todo')
  local page = nil
  if state and not FINAL[state] then page = redis.call('LPOP', todo) end
  if not state or FINAL[state] then
    unschedule(task_id)  -- ended or expired meanwhile
  elseif not page then
    redis.call('ZREM', ROUND, task_id)
  else
    local served = redis.call('INCR', SEQ)
    if redis.call('LLEN', todo) == 0 then
      redis.call('ZREM', ROUND, task_id)
    else
      redis.call('ZADD', ROUND, served, task_id)
    end
    local key = tkey(task_id, 'task')
    redis.call('HSET', key, '_served', served)
    local flight = tkey(task_id, 'flight')
    redis.call('SADD', flight, page)
    redis.call('PEXPIREAT', flight, math.floor(tonumber(redis.call('HGET', key, 'expires')) * 1000))
    if state == '1' then
      redis.call('HSET', key, 'state', '2')
      if tonumber(redis.call('HGET', key, 'started')) == 0 then
        redis.call('HSET', key, 'started', NOW_TEXT)
      end
      publish(task_id)
      publish_positions()
    end
    local retried = cjson.decode(redis.call('HGET', key, 'retried_pages'))
    local attempt = 1
    if contains(retried, page) then attempt = 2 end
    local id = deliver(task_id, page, attempt)
    return {'page', id, task_id, tonumber(page), attempt, record_fields(task_id)}
  end
end
return {}
