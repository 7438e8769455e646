-- Reliable fetch of one task for a thread (see fetch_task in lib.lua).
-- KEYS: in-flight list, paused set, busy hash, queue lists in the order to try
-- ARGV: busy field, queue names (same order as their KEYS)
-- A busy entry left by this thread means the reply to its last claim was lost: drop
-- it, so that mail counts as an orphan and goes back to its queue (heartbeat.py).
redis.call('HDEL', KEYS[3], ARGV[1])
return fetch_task(KEYS[1], KEYS[2], 4, 2)
