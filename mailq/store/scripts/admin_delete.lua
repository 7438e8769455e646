-- Erase mails for good (the dashboard's Delete): take each one's task off its queue
-- or set, delete its record, attempt log, body and search index entries. Only mails still
-- in the expected state (and queue) are erased, never one being sent. Returns the ids
-- erased.
-- KEYS: schedule, retry, dead, outbox, held set, events channel (the live pages), then
--       of each mail: record, attempt log, attempts, body, queue, its search index keys (three a
--       value: unindex in lib.lua)
-- ARGV: expected status, then of each mail: id, queue name (as read), number of its
--       index values, their bucket fields
local erased, k, a = {}, 7, 2
while a <= #ARGV do
  local id, queue_name, count = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local record, log, attempts = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local body, queue = KEYS[k + 3], KEYS[k + 4]
  local f = redis.call('HMGET', record, 'status', 'task', 'queue')
  if not f[1] then
    -- leftovers of a record that expired or was trimmed
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
    unindex(id, k + 5, a + 3, count)
  elseif f[1] == ARGV[1] and f[1] ~= 'sending' and f[3] == queue_name then
    take_off(f[1], f[2], id, queue, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    redis.call('DEL', record, log, attempts, body)
    unindex(id, k + 5, a + 3, count)
    publish_mail(KEYS[6], id, 'deleted', queue_name)
    table.insert(erased, id)
  end
  k, a = k + 5 + 3 * count, a + 3 + count
end
return erased
