-- Reliable fetch: move the oldest task of the first non-paused, non-empty queue into
-- this worker's in-flight list. It stays there until its outcome is recorded.
-- KEYS: in-flight list, paused set, queue lists in the order to try
-- ARGV: queue names, same order
for i = 3, #KEYS do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i - 2]) == 0 then
    local item = redis.call('LMOVE', KEYS[i], KEYS[1], 'RIGHT', 'LEFT')
    if item then
      return {ARGV[i - 2], item}
    end
  end
end
return false
