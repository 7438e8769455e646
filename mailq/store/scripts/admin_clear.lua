-- Empty one container by the members the caller read from it (Clear queue, Delete all,
-- Clear outbox), erasing the mails whose task or id it held, with their search index
-- entries. Members whose mail has moved on (stale tasks) are just dropped, as the
-- claim script would drop them. Returns the number of members removed.
-- KEYS: queue list or schedule / retry / dead / outbox zset,
--       then of each member's mail: record, attempt log, its search index zsets
-- ARGV: status the erased mails must have, 'tasks' or 'ids', then of each member: the
--       member, its mail id, the number of its index zsets
local is_list = redis.call('TYPE', KEYS[1]).ok == 'list'
local removed, k = 0, 2
for i = 3, #ARGV, 3 do
  local member, id, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local record, log = KEYS[k], KEYS[k + 1]
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
      redis.call('DEL', record, log)
      unindex(id, k + 2, count)
    end
  end
  k = k + 2 + count
end
return removed
