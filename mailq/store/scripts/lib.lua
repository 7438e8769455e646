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
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, WAKE_LEN - 1)
end

-- Take a mail's task (or id) off the container its status says it is in.
local function take_off(status, task, id, queue, schedule, retry, dead, outbox)
  if status == 'queued' then
    redis.call('LREM', queue, 1, task)
  end
  redis.call('ZREM', schedule, task)
  redis.call('ZREM', retry, task)
  redis.call('ZREM', dead, id)
  redis.call('ZREM', outbox, id)
end

-- Reliable fetch: move the oldest task of the first non-paused, non-empty queue into
-- the in-flight list, where it stays until its outcome is recorded. The queue lists
-- are KEYS[first_key..], their names ARGV[first_name..], in the order to try.
-- Returns {queue name, task} or false.
local function fetch_task(inflight, paused, first_key, first_name)
  for i = first_key, #KEYS do
    local name = ARGV[first_name + i - first_key]
    if redis.call('SISMEMBER', paused, name) == 0 then
      local task = redis.call('LMOVE', KEYS[i], inflight, 'RIGHT', 'LEFT')
      if task then
        return {name, task}
      end
    end
  end
  return false
end
