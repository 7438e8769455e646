-- Record a cron run in the job's history and release its claim, in one step.
-- A run redone by another worker (see cron_reclaim) is recorded once: only the
-- holder of the claim's current token may finish it.
-- KEYS: pending hash, runs list
-- ARGV: fire time, token ('' for a run without claim, e.g. `cron run`), run json, history length
if ARGV[2] ~= '' then
  local pending = redis.call('HGET', KEYS[1], ARGV[1])
  if not pending or cjson.decode(pending).token ~= ARGV[2] then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return 1
