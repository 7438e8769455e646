-- Reliable fetch of one task for a thread (see fetch_task in lib.lua).
-- KEYS: in-flight list, paused set, busy hash, session slots zset ('' without
--       [smtp] max_connections), fetched-ahead hash, queue lists in the order to try
-- ARGV: busy field, max connections (0: none), slot holder, now, lease seconds, the
--       queue length a fetch ahead needs (0: any task), queue names (same order as
--       their KEYS)
-- A busy entry left by this thread means the reply to its last claim was lost: drop
-- it, so that mail counts as an orphan and goes back to its queue (heartbeat.py).
-- Returns 'noslot' when the relay's sessions are all taken by other threads.
redis.call('HDEL', KEYS[3], ARGV[1])
if not session_slot(KEYS[4], ARGV[3], tonumber(ARGV[2]), tonumber(ARGV[4]),
                    tonumber(ARGV[5])) then
  redis.call('HDEL', KEYS[5], ARGV[1])
  return 'noslot'
end
return fetch_task(KEYS[1], KEYS[2], 6, 7, KEYS[5], ARGV[1], tonumber(ARGV[6]))
