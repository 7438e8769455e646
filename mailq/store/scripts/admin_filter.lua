-- One chunk of a filtered dashboard list, matched inside Redis: a Python scan spent
-- about 45 us a mail on replies it mostly threw away (4 to 6 s over 100,000 mails).
-- A mail matches when the needle is in its to, subject or last error (ASCII case
-- folded on both sides).
-- KEYS: the queue list or sorted set
-- ARGV: 'list'|'asc'|'desc', 'tasks'|'ids', start, stop, needle (lower case),
--       record key prefix, matches to skip, matches to return
-- Returns {members scanned, matches, member, score, member, score, ...}
local order, tasks, needle, prefix = ARGV[1], ARGV[2] == 'tasks', ARGV[5], ARGV[6]
local skip, want = tonumber(ARGV[7]), tonumber(ARGV[8])
local chunk
if order == 'list' then
  chunk = redis.call('LRANGE', KEYS[1], ARGV[3], ARGV[4])
elseif order == 'desc' then
  chunk = redis.call('ZREVRANGE', KEYS[1], ARGV[3], ARGV[4], 'WITHSCORES')
else
  chunk = redis.call('ZRANGE', KEYS[1], ARGV[3], ARGV[4], 'WITHSCORES')
end
local step = order == 'list' and 1 or 2
local reply, matches = {#chunk / step, 0}, 0
for i = 1, #chunk, step do
  local member = chunk[i]
  local id = member
  if tasks then
    id = string.match(member, '"args":%["([^"]*)"') or '-'
  end
  local f = redis.call('HMGET', prefix .. id, 'to', 'subject', 'last_error')
  local text = string.lower((f[1] or '') .. '\n' .. (f[2] or '') .. '\n' .. (f[3] or ''))
  if string.find(text, needle, 1, true) then
    matches = matches + 1
    if matches > skip and #reply < 2 + 2 * want then
      table.insert(reply, member)
      table.insert(reply, step == 2 and chunk[i + 1] or '')
    end
  end
end
reply[2] = matches
return reply
