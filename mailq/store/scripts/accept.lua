-- Store a new mail record and put its task on a queue or the schedule, in one step,
-- so a crash can never leave a record without a task or a task without a record.
-- An idempotency key seen before answers the earlier mail's id and stores nothing.
-- KEYS: record, idempotency key ('' for none), queue list or schedule zset, wake list
-- ARGV: mail id, idempotency ttl, 'queue'|'schedule', score, task, field/value pairs...
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    return {0, existing}
  end
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[3] == 'queue' then
  push_task(KEYS[3], KEYS[4], ARGV[5], false)
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
end
return {1, ARGV[1]}
