-- Erase mails for good (the dashboard's Delete): take each one's task off its queue
-- or set, drop it from the dead and outbox sets, delete its record and attempt log.
-- Only mails still in the expected state are erased, never one being sent.
-- Returns the ids erased.
-- KEYS: schedule zset, retry zset, dead zset, outbox zset
-- ARGV: key prefix, expected status, mail ids...
local erased = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local record = ARGV[1] .. 'm:' .. id
  local f = redis.call('HMGET', record, 'status', 'task', 'queue')
  if not f[1] then
    -- leftovers of a record that expired or was trimmed
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
  elseif f[1] == ARGV[2] and f[1] ~= 'sending' then
    if f[1] == 'queued' then
      redis.call('LREM', ARGV[1] .. 'q:' .. f[3], 1, f[2])
    end
    redis.call('ZREM', KEYS[1], f[2])
    redis.call('ZREM', KEYS[2], f[2])
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('DEL', record, record .. ':log')
    table.insert(erased, id)
  end
end
return erased
