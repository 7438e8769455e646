-- Kill retrying mails (move them to dead now). Returns the ids killed; the caller
-- trims the dead set afterwards (Dead.trim).
-- Each one's mail.dead event is written in the same step.
-- KEYS: retry, dead, events channel (the live pages), the event stream of each webhook
--       endpoint (n), then the record of each mail
-- ARGV: now, n endpoints, their subscriptions (n), then the mail ids (in the order of
--       their KEYS)
local killed = {}
local n = tonumber(ARGV[2])
for i = 3 + n, #ARGV do
  local id, record = ARGV[i], KEYS[i + 1]
  local f = redis.call('HMGET', record, 'status', 'task')
  if f[1] == 'retrying' then
    redis.call('ZREM', KEYS[1], f[2])
    redis.call('ZADD', KEYS[2], ARGV[1], id)
    redis.call('HSET', record, 'status', 'dead', 'finished_at', ARGV[1],
               'last_error', 'killed from the dashboard')
    redis.call('HDEL', record, 'next_at')
    emit('mail.dead', record, ARGV[1], {'code', '0', 'reply', 'killed from the dashboard'},
         3, 2, n)
    publish_mail(KEYS[3], id, 'dead', redis.call('HGET', record, 'queue'))
    table.insert(killed, id)
  end
end
return killed
