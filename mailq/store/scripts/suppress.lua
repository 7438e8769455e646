-- Put addresses on the suppression list (or take them off), keeping the hash and its
-- order zset in step. 'expire' takes off those of the given addresses whose end date
-- has passed (checked here: one suppressed again since it was read stays).
-- KEYS: suppression hash, suppression order zset
-- ARGV: 'add' | 'remove' | 'expire', now, then per address: normalised address, JSON
--       info (add) or just the addresses (remove, expire)
local done = 0
if ARGV[1] == 'expire' then
  local now = tonumber(ARGV[2])
  for i = 3, #ARGV do
    local info = redis.call('HGET', KEYS[1], ARGV[i])
    local till = info and tonumber(cjson.decode(info)['until'] or 0) or 0
    if till > 0 and till <= now then
      done = done + redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('ZREM', KEYS[2], ARGV[i])
    end
  end
elseif ARGV[1] == 'add' then
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
