-- Reliable fetch and claim in one step (one round trip per mail): move the oldest task
-- of the first non-paused, non-empty queue into this worker's in-flight list and mark
-- its mail as sending. Stale tasks (the mail was cancelled, sent or re-planned since)
-- are dropped on the way.
-- KEYS: in-flight list, paused set, busy hash, queue lists in the order to try
-- ARGV: worker id, busy field, now, record key prefix, queue names (same order)
-- A busy entry left by this thread means the reply to its last take was lost: drop it,
-- so that mail counts as an orphan and goes back to its queue (heartbeat.py).
redis.call('HDEL', KEYS[3], ARGV[2])
local dropped = 0
for i = 4, #KEYS do
  local name = ARGV[i + 1]
  if redis.call('SISMEMBER', KEYS[2], name) == 0 then
    local task = redis.call('LMOVE', KEYS[i], KEYS[1], 'RIGHT', 'LEFT')
    while task do
      local id = cjson.decode(task).args[1]
      local record = ARGV[4] .. 'm:' .. id
      local f = redis.call('HMGET', record, 'task', 'status', 'from', 'rcpts', 'raw',
                           'subject', 'to')
      if f[1] == task and f[2] ~= 'sent' and f[2] ~= 'dead' and f[2] ~= 'cancelled' then
        local attempts = redis.call('HINCRBY', record, 'attempts', 1)
        redis.call('HSET', record, 'status', 'sending', 'worker', ARGV[1], 'started_at', ARGV[3])
        redis.call('HSET', KEYS[3], ARGV[2], cjson.encode({id = id, queue = name, to = f[7],
                   subject = f[6], since = tonumber(ARGV[3])}))
        return {name, task, f[3], f[4], f[5], attempts}
      end
      redis.call('LREM', KEYS[1], 1, task)
      dropped = dropped + 1
      if dropped >= 1000 then return false end   -- keep one call short; the next goes on
      task = redis.call('LMOVE', KEYS[i], KEYS[1], 'RIGHT', 'LEFT')
    end
  end
end
return false
