-- Forget the given mails of a dead or outbox set (chosen by age and count): each one
-- still in the set leaves it, with its record, attempt log, body and search index
-- entries.
-- A mail retried since it was chosen is no longer in the set and is left alone.
-- Returns how many went.
-- KEYS: the zset, then of each mail: record, attempt log, attempts, body, its search index keys
--       (three a value: unindex in lib.lua)
-- ARGV: of each mail (in the order of their KEYS): id, number of its index values, their
--       bucket fields
local gone, k, a = 0, 2, 1
while a <= #ARGV do
  local id, count = ARGV[a], tonumber(ARGV[a + 1])
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3])
    unindex(id, k + 4, a + 2, count)
    gone = gone + 1
  end
  k, a = k + 4 + 3 * count, a + 2 + count
end
return gone
