-- ARGV[3] ttl ms, ARGV[4] encoding (j|z), ARGV[5] payload.
-- Returns the new completed record, or nil when a live record exists (nothing is written then).
if load() then return false end
local ttl = tonumber(ARGV[3])
local value = header('c', ARGV[4], 0, now + ttl, now, '', '') .. ARGV[5]
save(value, ttl)
return value
