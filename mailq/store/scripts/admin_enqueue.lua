-- Put mails on their queue now (Send now, Retry now, Retry): each mail still in the
-- expected state (and queue) leaves the schedule, retry or dead set and its fresh task
-- joins its queue; queued_at feeds the queue's latency. A dead mail gets a fresh retry
-- budget (attempts and interruptions 0; its attempt log stays).
-- Returns the ids moved; the others changed state meanwhile.
-- KEYS: schedule, retry, dead, events channel (the live pages), then record, queue and
--       wake list of each mail
-- ARGV: expected status ('scheduled'|'retrying'|'dead'), now,
--       then mail id, queue name (as read) and new task of each mail
local moved = {}
local expected = ARGV[1]
for i = 3, #ARGV, 3 do
  local id, queue_name, task = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local k = 4 + (i - 3)
  local record, queue, wake = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local f = redis.call('HMGET', record, 'status', 'task', 'queue')
  if f[1] == expected and f[3] == queue_name then
    if expected == 'scheduled' then
      redis.call('ZREM', KEYS[1], f[2])
    elseif expected == 'retrying' then
      redis.call('ZREM', KEYS[2], f[2])
    else
      redis.call('ZREM', KEYS[3], id)
      redis.call('HSET', record, 'attempts', 0)
      redis.call('HDEL', record, 'interrupted')
    end
    redis.call('HSET', record, 'status', 'queued', 'task', task, 'queued_at', ARGV[2])
    redis.call('HDEL', record, 'next_at')
    push_task(queue, wake, task, false)
    publish_mail(KEYS[4], id, 'queued', queue_name)
    table.insert(moved, id)
  end
end
return moved
