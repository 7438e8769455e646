-- Give back every task of a worker's in-flight list to the front of its queue, and
-- forget the worker. Used on graceful stop and when a worker is found dead.
-- KEYS: in-flight list, busy hash, worker hash, workers zset
-- ARGV: worker id, key prefix
local count = 0
local task = redis.call('RPOP', KEYS[1])
while task do
  local msg = cjson.decode(task)
  local record = ARGV[2] .. 'm:' .. msg.args[1]
  local f = redis.call('HMGET', record, 'queue', 'task', 'status')
  if f[1] and f[2] == task then
    if f[3] == 'sending' then
      redis.call('HSET', record, 'status', 'queued')
      redis.call('HDEL', record, 'worker', 'started_at')
    end
    redis.call('RPUSH', ARGV[2] .. 'q:' .. f[1], task)
    redis.call('LPUSH', ARGV[2] .. 'wake:' .. f[1], '1')
    redis.call('LTRIM', ARGV[2] .. 'wake:' .. f[1], 0, 99)
    count = count + 1
  end
  task = redis.call('RPOP', KEYS[1])
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return count
