-- Kill retrying mails (move them to dead now), then trim the dead set by age and
-- count as finish.lua does. Returns the ids killed.
-- KEYS: retry zset, dead zset
-- ARGV: key prefix, now, trim: max dead mails, trim: min score to keep, mail ids...
local killed = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local record = ARGV[1] .. 'm:' .. id
  local f = redis.call('HMGET', record, 'status', 'task')
  if f[1] == 'retrying' then
    redis.call('ZREM', KEYS[1], f[2])
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    redis.call('HSET', record, 'status', 'dead', 'finished_at', ARGV[2],
               'last_error', 'killed from the dashboard')
    redis.call('HDEL', record, 'next_at')
    table.insert(killed, id)
  end
end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then
  for _, gone in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do table.insert(old, gone) end
end
for _, gone in ipairs(old) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('DEL', ARGV[1] .. 'm:' .. gone, ARGV[1] .. 'm:' .. gone .. ':log')
end
return killed
