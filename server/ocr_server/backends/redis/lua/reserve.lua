-- Hold room for one submission: ARGV[4] reservation id, [5] tenant hash, [6] deadline,
-- [7] max_queue, [8] max pending per tenant. Reservations past their deadline (a front end
-- that died mid-Submit) no longer count.
local rid, th, deadline = ARGV[4], ARGV[5], tonumber(ARGV[6])
local max_queue, per_tenant = tonumber(ARGV[7]), tonumber(ARGV[8])
local reserved, reserved_tenant = PREFIX .. ':reserved', PREFIX .. ':reserved:' .. th
redis.call('ZREMRANGEBYSCORE', reserved, '-inf', NOW)
redis.call('ZREMRANGEBYSCORE', reserved_tenant, '-inf', NOW)
if redis.call('ZCARD', PENDING) + redis.call('ZCARD', reserved) >= max_queue then
  return 'queue_full'
end
local unfinished = redis.call('ZCOUNT', open_key(th), '(' .. NOW_TEXT, '+inf')
if unfinished + redis.call('ZCARD', reserved_tenant) >= per_tenant then
  return 'tenant_full'
end
redis.call('ZADD', reserved, deadline, rid)
redis.call('ZADD', reserved_tenant, deadline, rid)
local ms = math.floor(deadline * 1000)
redis.call('PEXPIREAT', reserved, ms, 'GT')
redis.call('PEXPIREAT', reserved_tenant, ms, 'GT')
redis.call('PEXPIREAT', reserved, ms, 'NX')
redis.call('PEXPIREAT', reserved_tenant, ms, 'NX')
return 'ok'
