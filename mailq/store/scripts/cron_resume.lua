-- Unpause a cron job. Its cursor moves to now in the same step, so no worker can
-- catch up the fire times that passed while it was paused.
-- KEYS: paused set, job hash
-- ARGV: job name, now
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], 'since', ARGV[2])
  return 1
end
return 0
