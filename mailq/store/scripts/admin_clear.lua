-- Empty one container by the members the caller read from it (Clear queue, Delete all,
-- Clear outbox), erasing the mails whose task or id it held, with their search index
-- entries. Members whose mail has moved on (stale tasks) are just dropped, as the
-- claim script would drop them. Returns the number of members removed.
-- KEYS: queue list or schedule / retry / dead / outbox / held zset, events channel (the
--       live pages: one event for the whole chunk), then of each member's mail: record,
--       attempt log, attempts, body, its search index keys (three a value: unindex in
--       lib.lua)
-- ARGV: status the erased mails must have, 'tasks' or 'ids', then of each member: the
--       member, its mail id, the number of its index values, their bucket fields
local is_list = redis.call('TYPE', KEYS[1]).ok == 'list'
local removed, k, a = 0, 3, 3
while a <= #ARGV do
  local member, id, count = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local record, log, attempts, body = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local gone
  if is_list then
    gone = redis.call('LREM', KEYS[1], 1, member)
  else
    gone = redis.call('ZREM', KEYS[1], member)
  end
  if gone == 1 then
    removed = removed + 1
    local f = redis.call('HMGET', record, 'status', 'task')
    if f[1] == ARGV[1] and (ARGV[2] == 'ids' or f[2] == member) then
      redis.call('DEL', record, log, attempts, body)
      unindex(id, k + 4, a + 3, count)
    end
  end
  k, a = k + 4 + 3 * count, a + 3 + count
end
if removed > 0 then publish_mail(KEYS[2], '', 'deleted', '', {count = removed}) end
return removed
