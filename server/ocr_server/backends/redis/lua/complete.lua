-- Store the result and end the task COMPLETED: ARGV[4] task id, [5] the sealed result.
-- Returns the record's fields (unchanged when it had ended already), or {} when it is gone.
local task_id = ARGV[4]
local state = live_state(task_id)
if not state then return {} end
if FINAL[state] then return record_fields(task_id) end
local key = tkey(task_id, 'task')
local expires_ms = math.floor(tonumber(redis.call('HGET', key, 'expires')) * 1000)
redis.call('SET', tkey(task_id, 'result'), ARGV[5], 'PXAT', expires_ms)
redis.call('HSET', key, 'pages_done', #cjson.decode(redis.call('HGET', key, 'page_numbers')))
end_task(task_id, '3')
return record_fields(task_id)
