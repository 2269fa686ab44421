-- Store a page's result: ARGV[4] entry id, [5] task id, [6] page, [7] the page as JSON.
-- Returns 'stored', 'last' (every page is stored: the caller builds the result and calls
-- complete; the entry stays pending until then, so if this host dies another assembles it)
-- or 'dropped' (the task ended or expired meanwhile).
local id, task_id, page = ARGV[4], ARGV[5], ARGV[6]
local state = live_state(task_id)
if not state or FINAL[state] then
  ack(id)
  return 'dropped'
end
local key = tkey(task_id, 'task')
local pages = tkey(task_id, 'pages')
redis.call('HSET', pages, page, ARGV[7])
redis.call('PEXPIREAT', pages, math.floor(tonumber(redis.call('HGET', key, 'expires')) * 1000))
if redis.call('SREM', tkey(task_id, 'flight'), page) == 0 then
  ack(id)  -- a second delivery of a page already counted (its host was thought dead)
  return 'stored'
end
if redis.call('LLEN', tkey(task_id, 'todo')) == 0
    and redis.call('SCARD', tkey(task_id, 'flight')) == 0 then
  unschedule(task_id)
  redis.call('HSET', key, '_assembling', id)
  return 'last'
end
ack(id)
redis.call('HINCRBY', key, 'pages_done', 1)
publish(task_id)
return 'stored'
