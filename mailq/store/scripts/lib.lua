-- Fragments shared by the scripts; the loader (scripts.py) puts this file, after the
-- constants it defines, in front of every script.

-- Put a task on a queue (the back, where workers pop, when `first` is true) and leave a
-- wake token for idle workers; the token list is kept short.
local function push_task(queue, wake, task, first)
  if first then
    redis.call('RPUSH', queue, task)
  else
    redis.call('LPUSH', queue, task)
  end
  -- a full list stays as it is: a push and a trim back to WAKE_LEN would leave it so too
  if redis.call('LLEN', wake) < WAKE_LEN then
    redis.call('LPUSH', wake, '1')
  end
end

-- Note a delivery attempt (JSON): at the end of the mail's attempt log list if it has
-- one (written before the attempts key), else as a line of its attempts string.
local function log_attempt(log, attempts, entry)
  if redis.call('EXISTS', log) == 1 then
    redis.call('RPUSH', log, entry)
  else
    redis.call('APPEND', attempts, entry .. '\n')
  end
end

-- Add 1 to a per-day counter (a string, or a field of a hash). Its TTL is set when the
-- key (or the hash field) is made: a few EXPIREs a day, not one a mail.
local function count_day(key, field)
  local value
  if field then
    value = redis.call('HINCRBY', key, field, 1)
  else
    value = redis.call('INCR', key)
  end
  if value == 1 then
    redis.call('EXPIRE', key, DAY_STAT_TTL)
  end
end

-- Take a mail's task (or id) off the container its status says it is in. A sent mail
-- has no task any more (finish.lua): only its id can be in a set.
local function take_off(status, task, id, queue, schedule, retry, dead, outbox, held)
  if task then
    if status == 'queued' then
      redis.call('LREM', queue, 1, task)
    elseif status == 'held' then
      redis.call('ZREM', held, task)
    end
    redis.call('ZREM', schedule, task)
    redis.call('ZREM', retry, task)
  end
  redis.call('ZREM', dead, id)
  redis.call('ZREM', outbox, id)
end

-- Search indexes (store/search.py). A value's mails are in its zset; while it has one
-- mail, that one is instead a field of a bucket hash, first or second level: the value's
-- digest -> 'id score'. Each value comes as three KEYS (zset, buckets) and a field.
local function index_add(zset, b0, b1, field, id, score)
  if redis.call('EXISTS', zset) == 0 then
    local bucket, entry = b0, redis.call('HGET', b0, field)
    if not entry then bucket, entry = b1, redis.call('HGET', b1, field) end
    if not entry then
      if redis.call('HLEN', b0) < INDEX_SPILL then bucket = b0 end
      redis.call('HSET', bucket, field, id .. ' ' .. score)
      return
    end
    local other, at = string.match(entry, '^(%S+) (%S+)$')
    if other == id then return end
    -- a second mail: both go to the value's zset
    redis.call('HDEL', bucket, field)
    redis.call('ZADD', zset, at, other)
  end
  redis.call('ZADD', zset, score, id)
end

-- The field of `bucket` goes if it still names mail `id`. Returns 1 if it went.
local function unbucket(bucket, field, id)
  local entry = redis.call('HGET', bucket, field)
  if entry and string.sub(entry, 1, #id + 1) == id .. ' ' then
    return redis.call('HDEL', bucket, field)
  end
  return 0
end

-- A mail leaves its search indexes: `count` values, their KEYS from `k` (three each),
-- their fields ARGV[a ..].
local function unindex(id, k, a, count)
  for i = 0, count - 1 do
    local z = k + 3 * i
    redis.call('ZREM', KEYS[z], id)
    unbucket(KEYS[z + 1], ARGV[a + i], id)
    unbucket(KEYS[z + 2], ARGV[a + i], id)
  end
end

-- Reliable fetch: move the oldest task of the first non-paused, non-empty queue into
-- the in-flight list, where it stays until its outcome is recorded. The queue lists
-- are KEYS[first_key..], their names ARGV[first_name..], in the order to try.
-- The task is noted as the thread's fetched-ahead task (`ahead` hash, field `field`)
-- until it is claimed, so the orphan sweep leaves it alone; a fetch that finds nothing
-- clears the note. With `min_len` > 0 (a fetch ahead, while the thread still has a mail
-- to deliver) it takes a task only when that queue holds more than `min_len`: with
-- fewer, an idle thread is the better place for it.
-- Returns {queue name, task} or false.
local function fetch_task(inflight, paused, first_key, first_name, ahead, field, min_len)
  for i = first_key, #KEYS do
    local name = ARGV[first_name + i - first_key]
    if redis.call('SISMEMBER', paused, name) == 0 then
      if min_len > 0 then
        local len = redis.call('LLEN', KEYS[i])
        if len > 0 and len <= min_len then break end
      end
      local task = redis.call('LMOVE', KEYS[i], inflight, 'RIGHT', 'LEFT')
      if task then
        redis.call('HSET', ahead, field, task)
        return {name, task}
      end
    end
  end
  redis.call('HDEL', ahead, field)
  return false
end

-- A task leaves the thread's fetched-ahead note once claimed or given back.
local function drop_ahead(ahead, field, task)
  if redis.call('HGET', ahead, field) == task then redis.call('HDEL', ahead, field) end
end

-- Tell the live pages (GET /api/events, store/live.py) that a mail changed: one JSON
-- line on the events channel. With nobody subscribed a PUBLISH costs next to nothing.
local function publish_mail(channel, id, status, queue, extra)
  local event = {type = 'mail', id = id, status = status, queue = queue or ''}
  for k, v in pairs(extra or {}) do event[k] = v end
  redis.call('PUBLISH', channel, cjson.encode(event))
end

-- The event of an outcome, written by the script that records the outcome (so an
-- outcome without its event cannot exist): one stream entry per webhook endpoint
-- subscribed to `etype`, a snapshot of the record's fields plus `extra` pairs.
-- KEYS[kbase + 1 .. kbase + n]: the endpoints' event streams;
-- ARGV[abase + 1 .. abase + n]: each one's subscribed types, as ' type type '.
-- With no endpoint (n = 0) it costs nothing.
local EVENT_FIELDS = {'id', 'message_id', 'queue', 'subject', 'from', 'to', 'rcpts',
                      'status', 'attempts', 'last_error', 'idempotency_key', 'metadata',
                      'suppressed', 'created_at'}
local function emit(etype, record, now, extra, kbase, abase, n)
  local entry = nil
  for i = 1, n do
    if string.find(ARGV[abase + i], ' ' .. etype .. ' ', 1, true) then
      if not entry then
        entry = {'type', etype, 'at', now}
        local f = redis.call('HMGET', record, unpack(EVENT_FIELDS))
        for j, name in ipairs(EVENT_FIELDS) do
          if f[j] then
            entry[#entry + 1] = name
            entry[#entry + 1] = f[j]
          end
        end
        for j = 1, #extra do entry[#entry + 1] = extra[j] end
      end
      redis.call('XADD', KEYS[kbase + i], '*', unpack(entry))
    end
  end
end

-- Which of a JSON list of addresses are on the suppression list now (a hash of
-- normalised address -> JSON with `until`, 0 for no end). Returns a Lua list.
local function suppressed_among(supp, rcpts_json, now)
  local found = {}
  if redis.call('EXISTS', supp) == 0 then return found end
  for _, addr in ipairs(cjson.decode(rcpts_json)) do
    local info = redis.call('HGET', supp, string.lower(addr))
    if info then
      local till = tonumber(cjson.decode(info)['until'] or 0) or 0
      if till == 0 or till > tonumber(now) then found[#found + 1] = addr end
    end
  end
  return found
end

-- The rate (messages/s) a limiter allows at `now`: the configured `rate`, or, after a
-- throttling reply cut it to `cut_rate` at `cut_at`, that plus `step` per second since
-- (additive increase), never above `rate`.
local function current_rate(rate, cut_rate, cut_at, step, now)
  if not cut_rate then return rate end
  return math.min(rate, tonumber(cut_rate) + step * math.max(0, now - tonumber(cut_at)))
end

-- A group's concurrency slot was left: the first mail still held waiting for one
-- (claim.lua) becomes due now, so the next tick puts it on its queue instead of it
-- polling. Waiters that have moved on since (sent, cancelled) are dropped on the way.
local function wake_waiter(waiting, held, now)
  for _ = 1, 10 do
    local first = redis.call('ZRANGE', waiting, 0, 0)[1]
    if not first then return end
    redis.call('ZREM', waiting, first)
    if redis.call('ZSCORE', held, first) then
      redis.call('ZADD', held, now, first)
      return
    end
  end
end

-- A thread's session slot on a relay with [smtp] max_connections: renew the lease of the
-- slot it holds, or take a free one. Leases that ran out (a worker killed) are freed
-- first. `max` 0: no limit, nothing is called. Returns true when the thread holds one.
local function session_slot(slots, holder, max, now, lease)
  if max <= 0 then return true end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZSCORE', slots, holder) or redis.call('ZCARD', slots) < max then
    redis.call('ZADD', slots, now + lease, holder)
    return true
  end
  return false
end

-- Store one new mail: the step of accept.lua, and of accept_batch.lua for each mail of a
-- batch. Its KEYS are KEYS[kb + 1 ..] and its ARGV ARGV[ab + 1 .. last], in the order
-- accept.lua describes. Returns accept.lua's reply.
local function accept_mail(kb, ab, last)
  local record = KEYS[kb + 1]
  local idem = KEYS[kb + 2]
  local target = KEYS[kb + 3]
  local body = KEYS[kb + 7]
  local id, mode, task, now = ARGV[ab + 1], ARGV[ab + 3], ARGV[ab + 5], ARGV[ab + 6]
  if idem ~= '' then
    local existing = redis.call('GET', idem)
    if existing then
      return {0, existing, ''}
    end
    redis.call('SET', idem, id, 'EX', ARGV[ab + 2])
  end
  local n = tonumber(ARGV[ab + 9])
  local m = tonumber(ARGV[ab + 10 + n])
  local first = ab + 11 + n + m
  local suppressed, all = {}, false
  if redis.call('EXISTS', KEYS[kb + 5]) == 1 then
    for i = first, last, 2 do
      if ARGV[i] == 'rcpts' then
        suppressed = suppressed_among(KEYS[kb + 5], ARGV[i + 1], now)
        if #suppressed > 0 then
          local gone, left = {}, {}
          for _, addr in ipairs(suppressed) do gone[addr] = true end
          for _, addr in ipairs(cjson.decode(ARGV[i + 1])) do
            if not gone[addr] then left[#left + 1] = addr end
          end
          if #left > 0 then ARGV[i + 1] = cjson.encode(left) else all = true end
        end
        break
      end
    end
  end
  redis.call('HSET', record, unpack(ARGV, first, last))
  redis.call('SET', body, ARGV[ab + 8])
  for i = 0, m - 1 do
    local k = kb + 8 + n + 3 * i
    index_add(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[ab + 11 + n + i], id, now)
  end
  local status = all and 'suppressed' or (mode == 'queue' and 'queued' or 'scheduled')
  redis.call('PUBLISH', KEYS[kb + 6], cjson.encode({type = 'mail', id = id, status = status,
                                                    new = true}))
  if not all then
    if mode == 'queue' then
      push_task(target, KEYS[kb + 4], task, false)
    else
      redis.call('ZADD', target, ARGV[ab + 4], task)
    end
  end
  if #suppressed == 0 then
    return {1, id, ''}
  end
  local listed = cjson.encode(suppressed)
  redis.call('HSET', record, 'suppressed', listed)
  if all then
    redis.call('HSET', record, 'status', 'suppressed', 'finished_at', now,
               'last_error', 'every recipient is on the suppression list')
    if tonumber(ARGV[ab + 7]) > 0 then
      redis.call('EXPIRE', record, ARGV[ab + 7])
      redis.call('EXPIRE', body, ARGV[ab + 7])
    end
  end
  emit('mail.suppressed', record, now, {'recipients_suppressed', listed}, kb + 7, ab + 9, n)
  return {1, id, listed, all and 1 or 0}
end
