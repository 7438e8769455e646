-- A throttling reply (store/limits.py): cut a limiter's rate in half ('cut'; at most
-- once a second, never below `floor`; it then climbs back by `step` per second each
-- second, see current_rate in lib.lua), or pause it ('pause', after a 421 greeting).
-- Either way the reply is noted and the held mail gets its ready time, spaced after the
-- others held on this limiter.
-- KEYS: the limiter's hash
-- ARGV: now, mode, configured rate (0: none), step, floor, pause seconds, reply
-- Returns {1 changed or 0, rate before, rate after, ready time} (rates as text).
local now, mode = tonumber(ARGV[1]), ARGV[2]
local rate, step, floor = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local s = redis.call('HMGET', KEYS[1], 'cut_rate', 'cut_at', 'paused_until', 'held_until')
local before = rate > 0 and current_rate(rate, s[1], s[2], step, now) or 0
local after, changed, ready = before, 0, now
if mode == 'cut' and rate > 0 then
  if not s[2] or now - tonumber(s[2]) >= 1 then
    after = math.max(before / 2, floor)
    changed = 1
    redis.call('HSET', KEYS[1], 'cut_rate', after, 'cut_at', now, 'tokens', 0, 'ts', now)
  end
  ready = now + 1 / after
else
  local till = now + tonumber(ARGV[6])
  if tonumber(s[3] or 0) < now then changed = 1 end
  if tonumber(s[3] or 0) < till then redis.call('HSET', KEYS[1], 'paused_until', till) end
  ready = math.max(till, tonumber(s[3] or 0))
end
local gap = after > 0 and 1 / after or 0.01
if tonumber(s[4] or 0) + gap > ready then ready = tonumber(s[4]) + gap end
redis.call('HSET', KEYS[1], 'held_until', ready, 'last_reply', ARGV[7], 'last_reply_at', now)
return {changed, tostring(before), tostring(after), tostring(ready)}
