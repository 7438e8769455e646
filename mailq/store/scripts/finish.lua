-- Record the outcome of one delivery attempt and acknowledge its task, atomically:
-- a mail leaves the in-flight list only when its outcome is in its record.
-- In the same step: the addresses refused as bad go on the suppression list, and the
-- outcome's event goes to each webhook endpoint that takes it (see emit in lib.lua).
-- KEYS: record, attempt log, in-flight list, busy hash, processed, failed,
--       processed today, failed today, outcome set (retry / dead / outbox zset, or ''),
--       deliveries hash (metrics), duration histogram hash (metrics), suppression hash,
--       suppression order zset, the events channel (pub/sub), today's outcomes hash,
--       the body, the attempts string, then the event stream of each webhook endpoint, the
--       limiters' slots zsets (the relay's session slots first, with max connections;
--       then, for each group with a concurrency, the slots zset the mail leaves and its
--       waiting zset, and the held set last), the paused set, the fetched-ahead hash
--       and the queue lists to fetch the thread's next task from (none: no fetch)
-- ARGV: task, busy field, outcome ('sent'|'retrying'|'dead'|'suppressed'), now, attempt
--       json, last error, score for the outcome set, new task (retrying), keep seconds
--       (sent, suppressed), mail id, metrics: outcome:code class field, duration bucket
--       field, duration seconds, recipients still owed the mail (JSON; '' when they are
--       all the envelope had), event type, recipients' outcomes (JSON, for the event),
--       code, reply, addresses to suppress (JSON object address -> JSON info, or ''),
--       '1' when a recipient refused the mail for good, recipients found suppressed at
--       delivery (JSON list or ''), staging note (JSON or ''), ms a sent mail keeps its
--       body (keep_sent_bodies; 0: as long as the record), n endpoints, their
--       subscriptions (n), then the
--       number of slots zsets, max connections (0: none), the thread's slot holder
--       name, the lease seconds, the queue length a fetch ahead needs (0: any task;
--       see fetch_task), then the names of the queues to fetch from
-- Outcome 'held' (a throttling reply, store/limits.py): the attempt is logged but not
-- counted, no counter moves, and the task waits in the held set (KEYS[9]) until the
-- score (ARGV[7]).
-- Returns {1 recorded or 0 not (the task is no longer the mail's), next queue, next task}:
-- fetching the thread's next task here saves it a round trip (fetch_task, lib.lua).
local n = tonumber(ARGV[24])

local function record()
  redis.call('LREM', KEYS[3], 1, ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[2])
  local current = redis.call('HMGET', KEYS[1], 'task', 'finished_at', 'queue')
  -- The same outcome again (its first reply was lost to a Redis outage): already recorded
  -- (and a sent mail's task is gone by then).
  if current[2] == ARGV[4] then
    return 1
  end
  if current[1] ~= ARGV[1] then
    return 0
  end
  local queue = current[3] or ''
  if ARGV[3] == 'held' then
    log_attempt(KEYS[2], KEYS[17], ARGV[5])
    redis.call('HINCRBY', KEYS[1], 'attempts', -1)
    redis.call('HSET', KEYS[1], 'status', 'held', 'last_error', ARGV[6], 'finished_at', ARGV[4],
               'next_at', ARGV[7])
    redis.call('HDEL', KEYS[1], 'worker', 'started_at')
    redis.call('ZADD', KEYS[9], ARGV[7], ARGV[1])
    publish_mail(KEYS[14], ARGV[10], 'held', queue)
    return 1
  end
  -- For /metrics: totals by outcome and code class; histogram buckets (not cumulative) + sum
  redis.call('HINCRBY', KEYS[10], ARGV[11], 1)
  redis.call('HINCRBY', KEYS[11], ARGV[12], 1)
  redis.call('HINCRBYFLOAT', KEYS[11], 'sum', ARGV[13])
  log_attempt(KEYS[2], KEYS[17], ARGV[5])
  redis.call('INCR', KEYS[5])
  count_day(KEYS[7])
  local outcome = ARGV[3]
  local final = outcome == 'sent' or outcome == 'suppressed'
  -- Per day, by outcome and by queue: the overview's series (none before this release).
  count_day(KEYS[15], outcome)
  count_day(KEYS[15], 'queue:' .. queue)
  if not final then
    redis.call('INCR', KEYS[6])
    count_day(KEYS[8])
  end
  -- The record's new fields in one HSET, the ones it no longer has in one HDEL.
  local set = {'status', outcome, 'finished_at', ARGV[4]}
  local gone = {'worker', 'started_at'}
  local function put(name, value) set[#set + 1] = name; set[#set + 1] = value end
  if ARGV[22] ~= '' then put('staging', ARGV[22]) end
  if ARGV[6] ~= '' then put('last_error', ARGV[6]) else gone[#gone + 1] = 'last_error' end
  if ARGV[14] ~= '' then put('rcpts', ARGV[14]) end
  if ARGV[21] ~= '' then
    local listed = cjson.decode(ARGV[21])
    local before = redis.call('HGET', KEYS[1], 'suppressed')
    if before then
      for _, addr in ipairs(cjson.decode(before)) do listed[#listed + 1] = addr end
    end
    put('suppressed', cjson.encode(listed))
  end
  if ARGV[19] ~= '' then
    for addr, info in pairs(cjson.decode(ARGV[19])) do
      redis.call('HSET', KEYS[12], addr, info)
      redis.call('ZADD', KEYS[13], ARGV[4], addr)
    end
  end
  if final then
    -- no task of it can be claimed again, and the field is 50 bytes of 400
    gone[#gone + 1] = 'task'
    if outcome == 'sent' then put('sent_at', ARGV[4]) end
  elseif outcome == 'retrying' then
    put('task', ARGV[8])
    put('next_at', ARGV[7])
    redis.call('ZADD', KEYS[9], ARGV[7], ARGV[8])
  end
  if n > 0 and ARGV[20] == '1' then put('partly', '1') end
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('HDEL', KEYS[1], unpack(gone))
  if final and tonumber(ARGV[9]) > 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[9])
    redis.call('EXPIRE', KEYS[2], ARGV[9])
    redis.call('EXPIRE', KEYS[17], ARGV[9])
    if outcome == 'sent' and tonumber(ARGV[23]) > 0 then
      redis.call('PEXPIRE', KEYS[16], ARGV[23])
    else
      redis.call('EXPIRE', KEYS[16], ARGV[9])
    end
  end
  if KEYS[9] ~= '' and outcome ~= 'retrying' then
    -- dead or outbox: the set keeps the id; Dead.trim / Outbox.trim bound its size
    redis.call('ZADD', KEYS[9], ARGV[7], ARGV[10])
  end
  if n > 0 then
    local etype = ARGV[15]
    if etype == 'mail.sent' and (redis.call('HEXISTS', KEYS[1], 'partly') == 1
                                 or redis.call('HEXISTS', KEYS[1], 'suppressed') == 1) then
      etype = 'mail.partly_sent'
    end
    emit(etype, KEYS[1], ARGV[4], {'recipients', ARGV[16], 'code', ARGV[17], 'reply', ARGV[18]},
         17, 24, n)
  end
  -- For the live pages; with nobody subscribed a PUBLISH costs next to nothing.
  redis.call('PUBLISH', KEYS[14], cjson.encode({type = 'mail', id = ARGV[10], status = outcome,
                                               queue = queue}))
  return 1
end

local recorded = record()
local nslots, max_conn = tonumber(ARGV[25 + n]), tonumber(ARGV[26 + n])
for i = (max_conn > 0 and 2 or 1), nslots - 1, 2 do
  if redis.call('ZREM', KEYS[17 + n + i], ARGV[10]) == 1 then
    wake_waiter(KEYS[18 + n + i], KEYS[17 + n + nslots], ARGV[4])
  end
end
local next_task = false
if session_slot(KEYS[18 + n], ARGV[27 + n], max_conn, tonumber(ARGV[4]),
                tonumber(ARGV[28 + n])) then
  next_task = fetch_task(KEYS[3], KEYS[18 + n + nslots], 20 + n + nslots, 30 + n,
                         KEYS[19 + n + nslots], ARGV[2], tonumber(ARGV[29 + n]))
else
  redis.call('HDEL', KEYS[19 + n + nslots], ARGV[2])
end
if next_task then
  return {recorded, next_task[1], next_task[2]}
end
return {recorded}
