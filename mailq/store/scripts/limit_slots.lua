-- Leases of limiter slots held by one worker: 'renew' (its heartbeat) sets their end
-- to `until`; 'release' (its stop) frees them and wakes threads waiting for a session.
-- A slot is the worker's when its holder starts with the worker prefix (a thread's
-- session) or is one of the given mail ids (a mail in flight).
-- KEYS: pairs of (slots zset, free list)
-- ARGV: mode, until, worker prefix, mail ids...
local mine = {}
for i = 4, #ARGV do mine[ARGV[i]] = true end
local prefix = ARGV[3]
local changed = 0
for k = 1, #KEYS, 2 do
  local holders = redis.call('ZRANGE', KEYS[k], 0, -1)
  for _, holder in ipairs(holders) do
    if mine[holder] or string.sub(holder, 1, #prefix) == prefix then
      if ARGV[1] == 'renew' then
        redis.call('ZADD', KEYS[k], 'XX', ARGV[2], holder)
      else
        redis.call('ZREM', KEYS[k], holder)
        redis.call('LPUSH', KEYS[k + 1], '1')
        redis.call('LTRIM', KEYS[k + 1], 0, WAKE_LEN - 1)
      end
      changed = changed + 1
    end
  end
end
return changed
