-- Mark a fetched mail as being sent, unless its task is stale (the mail was cancelled,
-- sent, or re-planned since this task was queued). A stale task is acknowledged and dropped.
-- KEYS: record, in-flight list, busy hash
-- ARGV: task, worker id, busy field, now
if not redis.call('LPOS', KEYS[2], ARGV[1]) then
  return false   -- no longer ours: returned to its queue as an orphan meanwhile
end
local f = redis.call('HMGET', KEYS[1], 'task', 'status', 'from', 'rcpts', 'raw', 'attempts',
                     'queue', 'subject', 'to')
if not f[1] or f[1] ~= ARGV[1] or f[2] == 'sent' or f[2] == 'dead' or f[2] == 'cancelled' then
  redis.call('LREM', KEYS[2], 1, ARGV[1])
  return false
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'sending', 'worker', ARGV[2], 'started_at', ARGV[4])
local id = string.match(KEYS[1], '([^:]+)$')
redis.call('HSET', KEYS[3], ARGV[3], cjson.encode({id = id, queue = f[7], to = f[9],
           subject = f[8], since = tonumber(ARGV[4])}))
return {f[3], f[4], f[5], attempts}
