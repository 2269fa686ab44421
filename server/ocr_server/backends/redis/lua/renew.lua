#!lua flags=allow-oom
-- A worker host's heartbeat for its pages in flight: ARGV[4] consumer, then entry ids.
-- Resets each entry's idle time if this consumer still holds it (JUSTID: the delivery count
-- stays); returns the ids it no longer holds (reclaimed by another host meanwhile).
local consumer = ARGV[4]
local lost = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', JOBS, GROUP, id, id, 1)
  if p[1] and p[1][2] == consumer then
    redis.call('XCLAIM', JOBS, GROUP, consumer, 0, id, 'JUSTID')
  else
    lost[#lost + 1] = id
  end
end
return lost
