#!lua flags=allow-oom
-- Give a reservation's room back: ARGV[4] reservation id, [5] tenant hash.
redis.call('ZREM', PREFIX .. ':reserved', ARGV[4])
redis.call('ZREM', PREFIX .. ':reserved:' .. ARGV[5], ARGV[4])
return 1
