-- Claim a fetched task's mail: mark it sending and note it in the worker's busy hash.
-- A stale task (the mail was cancelled, sent or re-planned since) leaves the in-flight
-- list instead, and false is returned.
-- Recipients suppressed since the mail was accepted are returned too (JSON, or ''),
-- so the worker leaves them off the envelope, and the record's relay ('release' for a
-- released copy of a caught mail, '' otherwise).
-- KEYS: record, in-flight list, busy hash, suppression hash
-- ARGV: task, mail id, queue, worker id, busy field, now, final states...
local f = redis.call('HMGET', KEYS[1], 'task', 'status', 'from', 'rcpts', 'raw', 'subject', 'to',
                     'relay')
local stale = f[1] ~= ARGV[1]
for i = 7, #ARGV do
  if f[2] == ARGV[i] then stale = true end
end
if stale then
  redis.call('LREM', KEYS[2], 1, ARGV[1])
  return false
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'sending', 'worker', ARGV[4], 'started_at', ARGV[6])
redis.call('HSET', KEYS[3], ARGV[5], cjson.encode({id = ARGV[2], queue = ARGV[3], to = f[7],
           subject = f[6], since = tonumber(ARGV[6])}))
local suppressed = suppressed_among(KEYS[4], f[4], ARGV[6])
return {f[3], f[4], f[5], attempts, #suppressed > 0 and cjson.encode(suppressed) or '',
        f[8] or ''}
