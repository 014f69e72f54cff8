-- ARGV[3] token. Returns 1 when the holder's claim was dropped, 0 when it was not held.
local rec = load()
if not rec or rec.status ~= 'p' or rec.token ~= ARGV[3] then return 0 end
remove()
return 1
