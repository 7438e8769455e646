-- Take over a claimed cron run whose worker died before recording it: swap in a new
-- token only if the claim is unchanged since it was read, so one worker takes it over.
-- KEYS: pending hash
-- ARGV: fire time, pending json as read, new pending json
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
