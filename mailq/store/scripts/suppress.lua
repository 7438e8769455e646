-- Put addresses on the suppression list (or take them off), keeping the hash and its
-- order zset in step.
-- KEYS: suppression hash, suppression order zset
-- ARGV: 'add' | 'remove', now, then per address: normalised address, JSON info (add)
--       or just the addresses (remove)
local done = 0
if ARGV[1] == 'add' then
  for i = 3, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
    done = done + 1
  end
else
  for i = 3, #ARGV do
    done = done + redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
  end
end
return done
