#!lua flags=allow-oom
-- Tidy what expired: Redis drops a task's own keys at its expiry (PEXPIREAT); this removes
-- the task from the shared queues and indexes, and deletes its keys now if the caller's
-- clock is ahead of Redis's. ARGV[4] most tasks to tidy in one call. Returns how many.
local limit = tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', EXPIRING, '-inf', NOW, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  local task_id, th, entry = string.match(member, '^([^|]+)|([^|]+)|(.+)$')
  local ref = redis.call('HGET', tkey(task_id, 'task'), 'document_ref') or task_id
  redis.call('ZREM', PENDING, task_id)
  redis.call('SREM', ACTIVE, task_id)
  redis.call('ZREM', ROUND, task_id)
  redis.call('HDEL', WATCHED, task_id)
  redis.call('ZREM', open_key(th), task_id)
  redis.call('ZREM', index_key(th), entry)
  redis.call('DEL', tkey(task_id, 'task'), tkey(task_id, 'pages'), tkey(task_id, 'result'),
    tkey(task_id, 'todo'), tkey(task_id, 'flight'), tkey(ref, 'doc'), tkey(ref, 'doc:part'),
    tkey(task_id, 'export'), tkey(task_id, 'export:part'))
  redis.call('ZREM', EXPIRING, member)
end
return #due
