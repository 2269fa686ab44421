-- Store a PENDING task and queue its pages, consuming its reservation; or, when the tenant's
-- request_id already names a live task, store nothing and return that task.
-- ARGV[4] reservation id, [5] tenant hash, [6] request key ('' for none), [7] task id,
-- [8] expiry in ms, [9] the tenant index entry, [10] page count n, then n page numbers,
-- then the record's field/value pairs.
-- Returns {1} when stored, {0, fields of the existing task} otherwise.
local rid, th, request_key, task_id = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local expires_ms, entry, n = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
redis.call('ZREM', PREFIX .. ':reserved', rid)
redis.call('ZREM', PREFIX .. ':reserved:' .. th, rid)
if request_key ~= '' then
  local existing = redis.call('GET', request_key)
  if existing and live_state(existing) then
    return {0, record_fields(existing)}
  end
  redis.call('SET', request_key, task_id, 'PXAT', expires_ms)
end
local key = tkey(task_id, 'task')
local fields = {}
for i = 11 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', key, unpack(fields))
redis.call('HSET', key, '_th', th)
redis.call('PEXPIREAT', key, expires_ms)
local todo = tkey(task_id, 'todo')
for i = 11, 10 + n do redis.call('RPUSH', todo, ARGV[i]) end
redis.call('PEXPIREAT', todo, expires_ms)
local expires = expires_ms / 1000
redis.call('ZADD', PENDING, redis.call('INCR', SEQ), task_id)
redis.call('ZADD', open_key(th), expires, task_id)
redis.call('PEXPIREAT', open_key(th), expires_ms, 'GT')
redis.call('PEXPIREAT', open_key(th), expires_ms, 'NX')
redis.call('ZADD', index_key(th), 0, entry)
redis.call('PEXPIREAT', index_key(th), expires_ms, 'GT')
redis.call('PEXPIREAT', index_key(th), expires_ms, 'NX')
redis.call('ZADD', EXPIRING, expires, task_id .. '|' .. th .. '|' .. entry)
publish(task_id)
redis.call('PUBLISH', WORK, task_id)
return {1}
