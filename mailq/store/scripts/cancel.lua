-- Cancel a mail that has not been sent: take its task off its queue or set.
-- Returns 'ok', 'missing', the status that forbids it, or 'moved' when the mail's
-- queue is no longer the one read before (the caller reads it again).
-- The mail.cancelled event is written in the same step.
-- KEYS: record, attempt log, queue list, schedule, retry, dead, outbox, held set, events
--       channel (the live pages), body, attempts string, then the event stream of each
--       webhook endpoint
-- ARGV: now, keep seconds, mail id, queue name as read, the states that forbid a cancel
--       (' sent sending ... ', states.py), n endpoints, their subscriptions
local f = redis.call('HMGET', KEYS[1], 'status', 'task', 'queue')
local status = f[1]
if not status then return 'missing' end
if string.find(ARGV[5], ' ' .. status .. ' ', 1, true) then return status end
if f[3] ~= ARGV[4] then return 'moved' end
take_off(status, f[2], ARGV[3], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
emit('mail.cancelled', KEYS[1], ARGV[1], {}, 11, 6, tonumber(ARGV[6]))
publish_mail(KEYS[9], ARGV[3], 'cancelled', f[3])
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[10], ARGV[2])
  redis.call('EXPIRE', KEYS[11], ARGV[2])
end
return 'ok'
