-- Kill retrying mails (move them to dead now). Returns the ids killed; the caller
-- trims the dead set afterwards (Dead.trim).
-- KEYS: retry, dead, then the record of each mail
-- ARGV: now, then the mail ids (in the order of their KEYS)
local killed = {}
for i = 2, #ARGV do
  local id, record = ARGV[i], KEYS[i + 1]
  local f = redis.call('HMGET', record, 'status', 'task')
  if f[1] == 'retrying' then
    redis.call('ZREM', KEYS[1], f[2])
    redis.call('ZADD', KEYS[2], ARGV[1], id)
    redis.call('HSET', record, 'status', 'dead', 'finished_at', ARGV[1],
               'last_error', 'killed from the dashboard')
    redis.call('HDEL', record, 'next_at')
    table.insert(killed, id)
  end
end
return killed
