-- Give a fetched task back to the back of its queue, to be fetched next (used when
-- its thread no longer holds it). Does nothing if the task is no longer in this
-- worker's in-flight list.
-- KEYS: in-flight list, busy hash, queue list, wake list, record, fetched-ahead hash
-- ARGV: task, busy field
redis.call('HDEL', KEYS[2], ARGV[2])
drop_ahead(KEYS[6], ARGV[2], ARGV[1])
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
local f = redis.call('HMGET', KEYS[5], 'task', 'status')
if f[1] ~= ARGV[1] then return 0 end
if f[2] == 'sending' then   -- claimed, never sent: the claim's attempt does not count
  redis.call('HSET', KEYS[5], 'status', 'queued')
  redis.call('HINCRBY', KEYS[5], 'attempts', -1)
end
push_task(KEYS[3], KEYS[4], ARGV[1], true)
return 1
