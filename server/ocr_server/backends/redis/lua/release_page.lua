#!lua flags=allow-oom
-- Give a page back without counting an attempt (its host is shutting down):
-- ARGV[4] entry id, [5] task id, [6] page.
local id, task_id, page = ARGV[4], ARGV[5], ARGV[6]
ack(id)
local state = live_state(task_id)
if not state or FINAL[state] then return 0 end
if redis.call('SREM', tkey(task_id, 'flight'), page) == 0 then return 0 end
requeue_page(task_id, page)
return 1
