-- Reliable fetch: move the oldest task of the first non-paused, non-empty queue into
-- this worker's in-flight list, where it stays until its outcome is recorded.
-- KEYS: in-flight list, paused set, busy hash, queue lists in the order to try
-- ARGV: busy field, queue names (same order as their KEYS)
-- A busy entry left by this thread means the reply to its last claim was lost: drop
-- it, so that mail counts as an orphan and goes back to its queue (heartbeat.py).
redis.call('HDEL', KEYS[3], ARGV[1])
for i = 4, #KEYS do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i - 2]) == 0 then
    local task = redis.call('LMOVE', KEYS[i], KEYS[1], 'RIGHT', 'LEFT')
    if task then
      return {ARGV[i - 2], task}
    end
  end
end
return false
