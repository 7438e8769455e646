-- Forget the given mails of a dead or outbox set (chosen by age and count): each one
-- still in the set leaves it, with its record and attempt log. A mail retried since
-- it was chosen is no longer in the set and is left alone. Returns how many went.
-- KEYS: the zset, then record, attempt log and body of each mail
-- ARGV: mail ids (in the order of their KEYS)
local gone = 0
for i, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('DEL', KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1])
    gone = gone + 1
  end
end
return gone
