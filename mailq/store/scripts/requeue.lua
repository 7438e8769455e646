-- Give back every task of a worker's in-flight list to the front of its queue, and
-- forget the worker. Used on graceful stop and when a worker is found dead.
-- A mail interrupted while sending for the max-th time goes to dead instead: a mail
-- that kills its worker (a poison pill) must not take every worker down in turn.
-- KEYS: in-flight list, busy hash, worker hash, workers zset, dead zset
-- ARGV: worker id, key prefix, max interruptions, now
local count = 0
local task = redis.call('RPOP', KEYS[1])
while task do
  local msg = cjson.decode(task)
  local record = ARGV[2] .. 'm:' .. msg.args[1]
  local f = redis.call('HMGET', record, 'queue', 'task', 'status')
  if f[1] and f[2] == task then
    local poisoned = false
    if f[3] == 'sending' then
      redis.call('HDEL', record, 'worker', 'started_at')
      local times = redis.call('HINCRBY', record, 'interrupted', 1)
      poisoned = times >= tonumber(ARGV[3])
      if poisoned then
        local error = 'its worker stopped while sending it ' .. times .. ' times'
        redis.call('HSET', record, 'status', 'dead', 'last_error', error, 'finished_at', ARGV[4])
        redis.call('ZADD', KEYS[5], ARGV[4], msg.args[1])
        redis.call('RPUSH', record .. ':log', cjson.encode({at = tonumber(ARGV[4]),
          worker = ARGV[1], outcome = 'dead', code = 0, reply = error, duration = 0}))
      else   -- an attempt whose outcome was never recorded does not count
        redis.call('HSET', record, 'status', 'queued')
        redis.call('HINCRBY', record, 'attempts', -1)
      end
    end
    if not poisoned then
      redis.call('RPUSH', ARGV[2] .. 'q:' .. f[1], task)
      redis.call('LPUSH', ARGV[2] .. 'wake:' .. f[1], '1')
      redis.call('LTRIM', ARGV[2] .. 'wake:' .. f[1], 0, 99)
      count = count + 1
    end
  end
  task = redis.call('RPOP', KEYS[1])
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return count
