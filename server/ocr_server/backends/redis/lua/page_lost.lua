#!lua flags=allow-oom
-- A page's worker died (its host lives): ARGV[4] entry id, [5] task id, [6] page,
-- [7] the failure message for a second loss. Run it once more at the front of its task,
-- or fail the task (ABORTED) the second time. Returns 'retry', 'failed' or 'dropped'.
local id, task_id, page, message = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
ack(id)
local state = live_state(task_id)
if not state or FINAL[state] then return 'dropped' end
local key = tkey(task_id, 'task')
local retried = cjson.decode(redis.call('HGET', key, 'retried_pages'))
if contains(retried, page) then
  end_task(task_id, '4', 10, message)
  return 'failed'
end
retried[#retried + 1] = tonumber(page)
redis.call('HSET', key, 'retried_pages', cjson.encode(retried))
redis.call('SREM', tkey(task_id, 'flight'), page)
requeue_page(task_id, page)
return 'retry'
