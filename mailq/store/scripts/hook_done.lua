-- Record what became of a batch of webhook deliveries to one endpoint, in one step:
-- a delivered event (or one given up on after the retry period) leaves the stream and
-- its group's pending list; a failed one stays pending, to be claimed again after its
-- backoff. Failures in a row are counted; at the limit the endpoint is paused. Every
-- attempt goes to the endpoint's recent-deliveries log.
-- KEYS: event stream, endpoint hash, log list
-- ARGV: now, log length, failures that pause, group name, then per attempt: entry id,
--       'ok' | 'failed' | 'gave_up', log entry json
for i = 5, #ARGV, 3 do
  local id, result = ARGV[i], ARGV[i + 1]
  if result == 'failed' then
    local failures = redis.call('HINCRBY', KEYS[2], 'failures', 1)
    redis.call('HINCRBY', KEYS[2], 'failed', 1)
    if failures >= tonumber(ARGV[3]) and redis.call('HGET', KEYS[2], 'paused') ~= '1' then
      redis.call('HSET', KEYS[2], 'paused', '1', 'paused_at', ARGV[1])
    end
  else
    redis.call('XACK', KEYS[1], ARGV[4], id)
    redis.call('XDEL', KEYS[1], id)
    if result == 'ok' then
      redis.call('HSET', KEYS[2], 'failures', 0, 'last_ok', ARGV[1])
      redis.call('HINCRBY', KEYS[2], 'delivered', 1)
    else
      redis.call('HINCRBY', KEYS[2], 'gave_up', 1)
    end
  end
  redis.call('LPUSH', KEYS[3], ARGV[i + 2])
end
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[2]) - 1)
return 1
