-- Claim a fetched task's mail: mark it sending and note it in the worker's busy hash.
-- A stale task (the mail was cancelled, sent or re-planned since) leaves the in-flight
-- list instead, and false is returned.
-- Recipients suppressed since the mail was accepted are returned too (JSON, or ''),
-- so the worker leaves them off the envelope, and the record's relay ('release' for a
-- released copy of a caught mail, '' otherwise).
-- With limiters (store/limits.py), the mail takes a token (rate), a place in the 24 h
-- window (daily quota) and a slot (concurrency) of every limiter it needs, all or none:
-- when one has nothing to give, the mail is held instead (no attempt counted): its
-- task goes to the held set with the time its token comes, and {'held', ready time,
-- limiter} is returned. Held mails of one limiter are spaced at its pace. A mail held
-- for a group's concurrency slot also joins that group's waiting set: the mail that
-- leaves a slot makes the first waiter due at once (wake_waiter, lib.lua), so the ready
-- time here is only a safety net (SLOT_RECHECK) for a slot freed another way (a lease
-- that ran out, a worker's stop).
-- KEYS: record, in-flight list, busy hash, suppression hash, held zset, events channel
--       (the live pages hear of a held mail), then the hash, slots zset, sent zset and
--       waiting zset of each limiter, then (with limiters) the event stream of each
--       webhook endpoint, then the thread's fetched-ahead hash, then the body (last)
-- ARGV: task, mail id, queue, worker id, busy field, now, n final states, final states,
--       n limiters, lease seconds, then 7 values per limiter: name, rate, burst,
--       concurrency, daily quota (0: none), domains (' a.example *.b.example ', or '*':
--       every mail), step of the additive increase; then (with limiters) n endpoints and
--       their subscriptions (n)
-- Claimed, held or stale, the task is no longer one the thread fetched ahead.
drop_ahead(KEYS[#KEYS - 1], ARGV[5], ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'task', 'status', 'from', 'rcpts', 'raw', 'subject', 'to',
                     'relay', 'attempts')
local stale = f[1] ~= ARGV[1]
local nfinal = tonumber(ARGV[7])
for i = 8, 7 + nfinal do
  if f[2] == ARGV[i] then stale = true end
end
if stale then
  redis.call('LREM', KEYS[2], 1, ARGV[1])
  return false
end
local now = tonumber(ARGV[6])
local base = 8 + nfinal
local nlim = tonumber(ARGV[base])
if nlim > 0 then
  local lease = tonumber(ARGV[base + 1])
  local domains = nil
  local function wanted(patterns)
    if patterns == '*' then return true end
    if not domains then
      domains = {}
      for _, addr in ipairs(cjson.decode(f[4])) do
        local at = string.find(addr, '@[^@]*$')
        if at then domains[#domains + 1] = string.lower(string.sub(addr, at + 1)) end
      end
    end
    for _, d in ipairs(domains) do
      if string.find(patterns, ' ' .. d .. ' ', 1, true) then return true end
      local rest = d
      while true do
        local dot = string.find(rest, '.', 1, true)
        if not dot then break end
        rest = string.sub(rest, dot + 1)
        if string.find(patterns, ' *.' .. rest .. ' ', 1, true) then return true end
      end
    end
    return false
  end
  local SLOT_RECHECK = 1.0
  local need, wait, spacing, hold, for_slot = {}, 0, 0, nil, false
  for i = 1, nlim do
    local a = base + 2 + (i - 1) * 7
    if wanted(ARGV[a + 5]) then
      local k = 7 + (i - 1) * 4
      local L = {name = ARGV[a], h = KEYS[k], slots = KEYS[k + 1], sent = KEYS[k + 2],
                 waiting = KEYS[k + 3],
                 rate = tonumber(ARGV[a + 1]), burst = tonumber(ARGV[a + 2]),
                 conc = tonumber(ARGV[a + 3]), quota = tonumber(ARGV[a + 4])}
      local s = redis.call('HMGET', L.h, 'tokens', 'ts', 'cut_rate', 'cut_at', 'paused_until',
                           'held_until')
      L.held_until = tonumber(s[6] or 0)
      local function waits(w, gap, slot)
        if w > wait then wait, spacing, hold, for_slot = w, gap, L, slot or false end
      end
      local paused = tonumber(s[5] or 0)
      if paused > now then waits(paused - now, 0.01) end
      if L.rate > 0 then
        L.r = current_rate(L.rate, s[3], s[4], tonumber(ARGV[a + 6]), now)
        L.tokens = L.burst
        if s[1] then
          L.tokens = math.min(L.burst, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * L.r)
        end
        if L.tokens < 1 then waits((1 - L.tokens) / L.r, 1 / L.r) end
      end
      if L.quota > 0 then
        redis.call('ZREMRANGEBYSCORE', L.sent, '-inf', now - 86400)
        if redis.call('ZCARD', L.sent) >= L.quota then
          local oldest = redis.call('ZRANGE', L.sent, 0, 0, 'WITHSCORES')
          waits(math.max(tonumber(oldest[2]) + 86400 - now, 0.001), 86400 / L.quota)
        end
      end
      if L.conc > 0 then
        redis.call('ZREMRANGEBYSCORE', L.slots, '-inf', now)
        if not redis.call('ZSCORE', L.slots, ARGV[2])
            and redis.call('ZCARD', L.slots) >= L.conc then
          waits(SLOT_RECHECK, 0.02 / L.conc, true)
        end
      end
      need[#need + 1] = L
    end
  end
  if hold then
    local ready = now + wait
    if hold.held_until + spacing > ready then ready = hold.held_until + spacing end
    redis.call('HSET', hold.h, 'held_until', ready)
    redis.call('LREM', KEYS[2], 1, ARGV[1])
    redis.call('HSET', KEYS[1], 'status', 'held', 'next_at', ready, 'held_by', hold.name)
    redis.call('ZADD', KEYS[5], ready, ARGV[1])
    if for_slot then redis.call('ZADD', hold.waiting, 'NX', now, ARGV[1]) end
    publish_mail(KEYS[6], ARGV[2], 'held', ARGV[3], {held_by = hold.name, ready = ready})
    -- mail.held for the endpoints that name it, on a mail's first hold only
    local hooks = base + 2 + 7 * nlim
    local nhooks = tonumber(ARGV[hooks] or 0)
    if nhooks > 0 and redis.call('HSETNX', KEYS[1], 'held_at', ARGV[6]) == 1 then
      emit('mail.held', KEYS[1], ARGV[6], {'held_by', hold.name, 'ready_at', tostring(ready)},
           6 + 4 * nlim, hooks, nhooks)
    end
    return {'held', tostring(ready), hold.name}
  end
  for _, L in ipairs(need) do
    if L.rate > 0 then redis.call('HSET', L.h, 'tokens', L.tokens - 1, 'ts', now) end
    if L.quota > 0 then redis.call('ZADD', L.sent, now, ARGV[2] .. ':' .. ARGV[6]) end
    if L.conc > 0 then redis.call('ZADD', L.slots, now + lease, ARGV[2]) end
  end
end
local attempts = (tonumber(f[9]) or 0) + 1
redis.call('HSET', KEYS[1], 'status', 'sending', 'worker', ARGV[4], 'started_at', ARGV[6],
           'attempts', attempts)
redis.call('HSET', KEYS[3], ARGV[5], cjson.encode({id = ARGV[2], queue = ARGV[3], to = f[7],
           subject = f[6], since = now}))
local suppressed = suppressed_among(KEYS[4], f[4], ARGV[6])
-- A record written before the body had its own key holds it as `raw`.
return {f[3], f[4], redis.call('GET', KEYS[#KEYS]) or f[5], attempts, #suppressed > 0 and cjson.encode(suppressed) or '',
        f[8] or ''}
