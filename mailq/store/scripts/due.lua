-- Move due tasks from the schedule or retry set onto their queues, in one step, so a
-- crash between "take from the set" and "push to the queue" cannot drop a mail.
-- Tasks whose mail has moved on (re-planned, cancelled) just leave the set.
-- KEYS: schedule, retry or held zset, events channel (the live pages: one event for the
--       whole step), then record, queue and wake list of each task
-- ARGV: tasks (in the order of their KEYS)
local moved = 0
for i, task in ipairs(ARGV) do
  local record, queue, wake = KEYS[3 * i], KEYS[3 * i + 1], KEYS[3 * i + 2]
  if redis.call('ZREM', KEYS[1], task) == 1 and redis.call('HGET', record, 'task') == task then
    redis.call('HSET', record, 'status', 'queued')
    push_task(queue, wake, task, false)
    moved = moved + 1
  end
end
if moved > 0 then publish_mail(KEYS[2], '', 'queued', '', {count = moved}) end
return moved
