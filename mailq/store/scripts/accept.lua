-- Store a new mail record and put its task on a queue or the schedule, in one step,
-- so a crash can never leave a record without a task or a task without a record.
-- KEYS: record, idempotency key ('' for none), queue list or schedule zset, wake list
-- ARGV: mail id, idempotency ttl, 'queue'|'schedule', score, task, field/value pairs...
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1])
    local f = redis.call('HMGET', prefix .. existing, 'status', 'queue', 'send_at')
    return {0, existing, f[1] or '', f[2] or '', f[3] or ''}
  end
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[3] == 'queue' then
  redis.call('LPUSH', KEYS[3], ARGV[5])
  redis.call('LPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, 99)
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
end
return {1, ARGV[1]}
