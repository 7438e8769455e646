-- Put mails on their queue now (Send now, Retry now, Retry): each mail still in the
-- expected state leaves the schedule, retry or dead set and its fresh task joins its
-- queue, with a wake token; queued_at feeds the queue's latency. A dead mail gets a
-- fresh retry budget (attempts and interruptions 0; its attempt log stays).
-- Returns the ids moved; the others changed state meanwhile.
-- KEYS: schedule zset, retry zset, dead zset
-- ARGV: key prefix, expected status ('scheduled'|'retrying'|'dead'), now, mail id, new task, ...
local moved = {}
local expected = ARGV[2]
for i = 4, #ARGV, 2 do
  local id, task = ARGV[i], ARGV[i + 1]
  local record = ARGV[1] .. 'm:' .. id
  local f = redis.call('HMGET', record, 'status', 'task', 'queue')
  if f[1] == expected then
    if expected == 'scheduled' then
      redis.call('ZREM', KEYS[1], f[2])
    elseif expected == 'retrying' then
      redis.call('ZREM', KEYS[2], f[2])
    else
      redis.call('ZREM', KEYS[3], id)
      redis.call('HSET', record, 'attempts', 0)
      redis.call('HDEL', record, 'interrupted')
    end
    redis.call('HSET', record, 'status', 'queued', 'task', task, 'queued_at', ARGV[3])
    redis.call('HDEL', record, 'next_at')
    local wake = ARGV[1] .. 'wake:' .. f[3]
    redis.call('LPUSH', ARGV[1] .. 'q:' .. f[3], task)
    redis.call('LPUSH', wake, '1')
    redis.call('LTRIM', wake, 0, 99)
    table.insert(moved, id)
  end
end
return moved
