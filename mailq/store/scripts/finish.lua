-- Record the outcome of one delivery attempt and acknowledge its task, atomically:
-- a mail leaves the in-flight list only when its outcome is in its record.
-- KEYS: record, attempt log, in-flight list, busy hash, processed, failed,
--       processed today, failed today, outcome set (retry / dead / outbox zset, or ''),
--       deliveries hash (metrics), duration histogram hash (metrics)
-- ARGV: task, busy field, outcome ('sent'|'retrying'|'dead'), now, attempt json,
--       last error, score for the outcome set, new task (retrying), keep seconds (sent),
--       trim: max members of the outcome set, trim: min score to keep, record key prefix,
--       metrics: outcome:code class field, duration bucket field, duration seconds,
--       recipients still owed the mail (JSON; '' when they are all the envelope had)
redis.call('LREM', KEYS[3], 1, ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[2])
local current = redis.call('HMGET', KEYS[1], 'task', 'finished_at')
if current[1] ~= ARGV[1] then
  return 0
end
-- The same outcome again (its first reply was lost to a Redis outage): already recorded.
if current[2] == ARGV[4] then
  return 1
end
local day_ttl = 200 * 86400
-- For /metrics: totals by outcome and code class; histogram buckets (not cumulative) + sum
redis.call('HINCRBY', KEYS[10], ARGV[13], 1)
redis.call('HINCRBY', KEYS[11], ARGV[14], 1)
redis.call('HINCRBYFLOAT', KEYS[11], 'sum', ARGV[15])
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('INCR', KEYS[5])
redis.call('INCR', KEYS[7])
redis.call('EXPIRE', KEYS[7], day_ttl)
local outcome = ARGV[3]
if outcome ~= 'sent' then
  redis.call('INCR', KEYS[6])
  redis.call('INCR', KEYS[8])
  redis.call('EXPIRE', KEYS[8], day_ttl)
end
redis.call('HSET', KEYS[1], 'status', outcome, 'last_error', ARGV[6], 'finished_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'worker', 'started_at')
if ARGV[16] ~= '' then
  redis.call('HSET', KEYS[1], 'rcpts', ARGV[16])
end
local id = string.match(KEYS[1], '([^:]+)$')
if outcome == 'sent' then
  redis.call('HSET', KEYS[1], 'sent_at', ARGV[4])
  if tonumber(ARGV[9]) > 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[9])
    redis.call('EXPIRE', KEYS[2], ARGV[9])
  end
elseif outcome == 'retrying' then
  redis.call('HSET', KEYS[1], 'task', ARGV[8], 'next_at', ARGV[7])
  redis.call('ZADD', KEYS[9], ARGV[7], ARGV[8])
  return 1
end
if KEYS[9] ~= '' then
  -- dead or outbox: keep the id, trimmed by count and age; trimmed records go too
  redis.call('ZADD', KEYS[9], ARGV[7], id)
  local old = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', '(' .. ARGV[11])
  local extra = redis.call('ZCARD', KEYS[9]) - tonumber(ARGV[10])
  if extra > 0 then
    for _, gone in ipairs(redis.call('ZRANGE', KEYS[9], 0, extra - 1)) do table.insert(old, gone) end
  end
  for _, gone in ipairs(old) do
    redis.call('ZREM', KEYS[9], gone)
    redis.call('DEL', ARGV[12] .. gone, ARGV[12] .. gone .. ':log')
  end
end
return 1
