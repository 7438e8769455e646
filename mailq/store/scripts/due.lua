-- Move due tasks from the schedule and retry sets onto their queues, in one step,
-- so a crash between "pop from schedule" and "push to queue" cannot drop a mail.
-- KEYS: schedule zset, retry zset
-- ARGV: now, key prefix, max tasks per call
local moved = 0
for k = 1, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
  for _, task in ipairs(due) do
    redis.call('ZREM', KEYS[k], task)
    local msg = cjson.decode(task)
    local record = ARGV[2] .. 'm:' .. msg.args[1]
    local f = redis.call('HMGET', record, 'queue', 'task')
    if f[1] and f[2] == task then
      redis.call('HSET', record, 'status', 'queued')
      redis.call('LPUSH', ARGV[2] .. 'q:' .. f[1], task)
      redis.call('LPUSH', ARGV[2] .. 'wake:' .. f[1], '1')
      redis.call('LTRIM', ARGV[2] .. 'wake:' .. f[1], 0, 99)
      moved = moved + 1
    end
  end
end
return moved
