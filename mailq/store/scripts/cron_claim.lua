-- Claim one fire time of a cron job, exactly once across every worker and host:
-- only the caller whose ZADD NX adds the fire time runs it. The claim is kept as
-- pending until the run is recorded, so a run lost with its worker can be redone.
-- KEYS: job hash, fired zset, pending hash, paused set
-- ARGV: job name, fire time (epoch), now, seconds to remember claims, pending json
local fire = tonumber(ARGV[2])
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return 'paused' end
if fire <= tonumber(redis.call('HGET', KEYS[1], 'skip_mark') or '0') then return 'skipped' end
if redis.call('ZADD', KEYS[2], 'NX', fire, ARGV[2]) == 0 then return 'taken' end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[4])))
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
if fire > tonumber(redis.call('HGET', KEYS[1], 'last_fire') or '0') then
  redis.call('HSET', KEYS[1], 'last_fire', ARGV[2])
end
return 'ok'
