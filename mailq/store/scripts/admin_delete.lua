-- Erase mails for good (the dashboard's Delete): take each one's task off its queue
-- or set, delete its record, attempt log and search index entries. Only mails still
-- in the expected state (and queue) are erased, never one being sent. Returns the ids
-- erased.
-- KEYS: schedule, retry, dead, outbox, then of each mail: record, attempt log, queue,
--       its search index zsets
-- ARGV: expected status, then of each mail: id, queue name (as read), number of its
--       index zsets
local erased, k = {}, 5
for i = 2, #ARGV, 3 do
  local id, queue_name, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local record, log, queue = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local f = redis.call('HMGET', record, 'status', 'task', 'queue')
  if not f[1] then
    -- leftovers of a record that expired or was trimmed
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
    unindex(id, k + 3, count)
  elseif f[1] == ARGV[1] and f[1] ~= 'sending' and f[3] == queue_name then
    take_off(f[1], f[2], id, queue, KEYS[1], KEYS[2], KEYS[3], KEYS[4])
    redis.call('DEL', record, log)
    unindex(id, k + 3, count)
    table.insert(erased, id)
  end
  k = k + 3 + count
end
return erased
