-- Store a new mail record and put its task on a queue or the schedule, in one step,
-- so a crash can never leave a record without a task or a task without a record.
-- An idempotency key seen before answers the earlier mail's id and stores nothing.
-- Suppressed recipients are left off the envelope (and listed in the record's
-- `suppressed`); a mail whose recipients are all suppressed is stored as
-- `suppressed` with no task. Either way the mail.suppressed event is written here.
-- Returns {1 | 0, id, suppressed addresses as JSON or '', 1 when all are}.
-- Its search index entries (store/search.py) are written here too, with the record.
-- KEYS: record, idempotency key ('' for none), queue list or schedule zset, wake list,
--       suppression hash, events channel (pub/sub, for the live pages), body, then the
--       event stream of each webhook endpoint, then of each search index value its zset
--       and its two buckets (index_add in lib.lua)
-- ARGV: mail id, idempotency ttl, 'queue'|'schedule', score, task, now, seconds to
--       keep a suppressed mail, the body (body.py), n endpoints, their subscriptions (n),
--       m index values, their bucket fields (m), field/value pairs...
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    return {0, existing, ''}
  end
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
local n = tonumber(ARGV[9])
local m = tonumber(ARGV[10 + n])
local first = 11 + n + m
local suppressed, all = {}, false
if redis.call('EXISTS', KEYS[5]) == 1 then
  for i = first, #ARGV, 2 do
    if ARGV[i] == 'rcpts' then
      suppressed = suppressed_among(KEYS[5], ARGV[i + 1], ARGV[6])
      if #suppressed > 0 then
        local gone, left = {}, {}
        for _, addr in ipairs(suppressed) do gone[addr] = true end
        for _, addr in ipairs(cjson.decode(ARGV[i + 1])) do
          if not gone[addr] then left[#left + 1] = addr end
        end
        if #left > 0 then ARGV[i + 1] = cjson.encode(left) else all = true end
      end
      break
    end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, first))
redis.call('SET', KEYS[7], ARGV[8])
for i = 0, m - 1 do
  local k = 8 + n + 3 * i
  index_add(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[11 + n + i], ARGV[1], ARGV[6])
end
local status = all and 'suppressed' or (ARGV[3] == 'queue' and 'queued' or 'scheduled')
redis.call('PUBLISH', KEYS[6], cjson.encode({type = 'mail', id = ARGV[1], status = status,
                                             new = true}))
if #suppressed == 0 then
  if ARGV[3] == 'queue' then
    push_task(KEYS[3], KEYS[4], ARGV[5], false)
  else
    redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
  end
  return {1, ARGV[1], ''}
end
local listed = cjson.encode(suppressed)
redis.call('HSET', KEYS[1], 'suppressed', listed)
if all then
  redis.call('HSET', KEYS[1], 'status', 'suppressed', 'finished_at', ARGV[6],
             'last_error', 'every recipient is on the suppression list')
  if tonumber(ARGV[7]) > 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[7])
    redis.call('EXPIRE', KEYS[7], ARGV[7])
  end
elseif ARGV[3] == 'queue' then
  push_task(KEYS[3], KEYS[4], ARGV[5], false)
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
end
emit('mail.suppressed', KEYS[1], ARGV[6], {'recipients_suppressed', listed}, 7, 9, n)
return {1, ARGV[1], listed, all and 1 or 0}
