-- Drop search index bucket fields whose mail's record is gone (a lookup or the sweep saw
-- it), each only if it still names that mail: a new mail may have taken the field since.
-- KEYS: buckets; ARGV: of each bucket in turn: field, mail id. Returns how many went.
local gone = 0
for i = 1, #KEYS do
  gone = gone + unbucket(KEYS[i], ARGV[2 * i - 1], ARGV[2 * i])
end
return gone
