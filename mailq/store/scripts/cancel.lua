-- Cancel a mail that has not been sent: take its task off its queue or set.
-- KEYS: record, schedule zset, retry zset, dead zset
-- ARGV: now, key prefix, keep seconds
local f = redis.call('HMGET', KEYS[1], 'status', 'task', 'queue')
local status = f[1]
if not status then return 'missing' end
if status == 'sent' or status == 'sending' or status == 'cancelled' then return status end
if status == 'queued' then
  redis.call('LREM', ARGV[2] .. 'q:' .. f[3], 1, f[2])
end
redis.call('ZREM', KEYS[2], f[2])
redis.call('ZREM', KEYS[3], f[2])
redis.call('ZREM', KEYS[4], string.match(KEYS[1], '([^:]+)$'))
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
if tonumber(ARGV[3]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[1] .. ':log', ARGV[3])
end
return 'ok'
