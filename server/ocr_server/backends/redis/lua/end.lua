#!lua flags=allow-oom
-- Fail or cancel a task: ARGV[4] task id, [5] state ('4' failed, '5' cancelled),
-- [6] status code and [7] message of a failure (or ''). Runs even when Redis is out of
-- memory: ending tasks is how room comes back. Returns the record's fields (unchanged when
-- it had ended already), or {} when it is gone.
local task_id = ARGV[4]
local state = live_state(task_id)
if not state then return {} end
if FINAL[state] then return record_fields(task_id) end
if ARGV[6] ~= '' then
  end_task(task_id, ARGV[5], ARGV[6], ARGV[7])
else
  end_task(task_id, ARGV[5])
end
return record_fields(task_id)
