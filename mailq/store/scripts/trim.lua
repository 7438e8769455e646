-- Forget the given mails of a dead or outbox set (chosen by age and count): each one
-- still in the set leaves it, with its record, attempt log and search index entries.
-- A mail retried since it was chosen is no longer in the set and is left alone.
-- Returns how many went.
-- KEYS: the zset, then of each mail: record, attempt log, its search index zsets
-- ARGV: of each mail (in the order of their KEYS): id, number of its index zsets
local gone, k = 0, 2
for i = 1, #ARGV, 2 do
  local id, count = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('DEL', KEYS[k], KEYS[k + 1])
    unindex(id, k + 2, count)
    gone = gone + 1
  end
  k = k + 2 + count
end
return gone
