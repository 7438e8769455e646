-- Erase mails for good (the dashboard's Delete): take each one's task off its queue
-- or set, delete its record and attempt log. Only mails still in the expected state
-- (and queue) are erased, never one being sent. Returns the ids erased.
-- KEYS: schedule, retry, dead, outbox, held set, events channel (the live pages), then
--       record, attempt log and queue of each mail
-- ARGV: expected status, then mail id and queue name (as read) of each mail
local erased = {}
for i = 2, #ARGV, 2 do
  local id, queue_name = ARGV[i], ARGV[i + 1]
  local k = 6 + 3 * (i - 2) / 2
  local record, log, queue = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local f = redis.call('HMGET', record, 'status', 'task', 'queue')
  if not f[1] then
    -- leftovers of a record that expired or was trimmed
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
  elseif f[1] == ARGV[1] and f[1] ~= 'sending' and f[3] == queue_name then
    take_off(f[1], f[2], id, queue, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    redis.call('DEL', record, log)
    publish_mail(KEYS[6], id, 'deleted', queue_name)
    table.insert(erased, id)
  end
end
return erased
