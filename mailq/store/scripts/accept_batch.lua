-- Store many new mails in one call (a batch without idempotency keys, Store.accept_all),
-- each as accept.lua stores one (accept_mail in lib.lua): one script call instead of one
-- a mail saves Redis the call's own cost (its lookup, its KEYS and ARGV tables, its reply)
-- for every mail but one. Several calls of it go in one MULTI/EXEC for a large batch.
-- KEYS: the KEYS of accept.lua for each mail, one mail after the other.
-- ARGV: the number of mails c, then for each mail the number of its KEYS and of its ARGV
--       (2c counts), then the ARGV of accept.lua for each mail, one after the other.
-- Returns the replies of accept.lua, in order.
local count = tonumber(ARGV[1])
local kb, ab = 0, 1 + 2 * count
local replies = {}
for j = 1, count do
  local nargs = tonumber(ARGV[2 * j + 1])
  replies[j] = accept_mail(kb, ab, ab + nargs)
  kb, ab = kb + tonumber(ARGV[2 * j]), ab + nargs
end
return replies
