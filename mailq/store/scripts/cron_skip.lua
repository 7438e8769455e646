-- Record fire times missed past the catch-up window as one skipped run, once: only
-- the worker that moves skip_mark on from the value it read records them. No fire
-- time at or before skip_mark can be claimed afterwards.
-- KEYS: job hash, runs list
-- ARGV: skip_mark read ('' when none), new skip_mark, run json, history length
if (redis.call('HGET', KEYS[1], 'skip_mark') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'skip_mark', ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return 1
