-- Give back tasks of a stopped or dead worker's in-flight list to the back of their
-- queues. A mail interrupted while sending for the max-th time goes to dead instead:
-- a mail that kills its worker (a poison pill) must not take every worker down in turn.
-- Once the in-flight list is empty, the worker is forgotten.
-- Returns {tasks requeued, tasks left in the in-flight list}.
-- A poison pill's mail.dead event is written in the same step.
-- KEYS: in-flight list, busy hash, worker hash, workers zset, dead zset, the event
--       stream of each webhook endpoint (n), then record, attempt log, attempts string,
--       queue and wake list of each task, then the fetched-ahead hash (last)
-- ARGV: worker id, max interruptions, now, n endpoints, their subscriptions (n), then
--       task and mail id of each task
local count = 0
local n = tonumber(ARGV[4])
for i = 5 + n, #ARGV, 2 do
  local task, id = ARGV[i], ARGV[i + 1]
  local k = 5 + n + 5 * (i - 5 - n) / 2
  local record, log, attempts = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local queue, wake = KEYS[k + 4], KEYS[k + 5]
  if redis.call('LREM', KEYS[1], 1, task) == 1 then
    local f = redis.call('HMGET', record, 'task', 'status')
    if f[1] == task then
      local poisoned = false
      if f[2] == 'sending' then
        redis.call('HDEL', record, 'worker', 'started_at')
        local times = redis.call('HINCRBY', record, 'interrupted', 1)
        poisoned = times >= tonumber(ARGV[2])
        if poisoned then
          local error = 'its worker stopped while sending it ' .. times .. ' times'
          redis.call('HSET', record, 'status', 'dead', 'last_error', error, 'finished_at', ARGV[3])
          redis.call('ZADD', KEYS[5], ARGV[3], id)
          log_attempt(log, attempts, cjson.encode({at = tonumber(ARGV[3]), worker = ARGV[1],
            outcome = 'dead', code = 0, reply = error, duration = 0}))
          emit('mail.dead', record, ARGV[3], {'code', '0', 'reply', error}, 5, 4, n)
        else   -- an attempt whose outcome was never recorded does not count
          redis.call('HSET', record, 'status', 'queued')
          redis.call('HINCRBY', record, 'attempts', -1)
        end
      end
      if not poisoned then
        push_task(queue, wake, task, true)
        count = count + 1
      end
    end
  end
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[#KEYS])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return {count, left}
