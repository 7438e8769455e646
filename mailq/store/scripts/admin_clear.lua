-- Empty one container by up to `count` members per call (Clear queue, Delete all,
-- Clear outbox), erasing the mails whose task or id it held. Members whose mail has
-- moved on (stale tasks) are just dropped, as the claim script would drop them.
-- Called in a loop, so Redis is never blocked for long. Returns members removed.
-- KEYS: queue list or schedule / retry / dead / outbox zset
-- ARGV: key prefix, 'tasks' (members are tasks) or 'ids' (members are mail ids),
--       status the erased mails must have, count
local members
if redis.call('TYPE', KEYS[1]).ok == 'list' then
  members = redis.call('RPOP', KEYS[1], tonumber(ARGV[4])) or {}
else
  members = {}
  local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[4]))
  for i = 1, #popped, 2 do table.insert(members, popped[i]) end
end
for _, member in ipairs(members) do
  local id = member
  if ARGV[2] == 'tasks' then
    local ok, msg = pcall(cjson.decode, member)
    id = ok and type(msg) == 'table' and msg.args and msg.args[1] or nil
  end
  if id then
    local record = ARGV[1] .. 'm:' .. id
    local f = redis.call('HMGET', record, 'status', 'task')
    if f[1] == ARGV[3] and (ARGV[2] == 'ids' or f[2] == member) then
      redis.call('DEL', record, record .. ':log')
    end
  end
end
return #members
