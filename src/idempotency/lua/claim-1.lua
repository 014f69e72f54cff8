-- ARGV[3] token, ARGV[4] lease ms, ARGV[5] ttl ms, ARGV[6] fingerprint (hex).
-- Returns nil when the caller now holds the key, else the record that blocks it (completed, or in progress with a live lease).
local rec = load()
if rec and (rec.status == 'c' or rec.lease > now) then return rec.raw end
local ttl = tonumber(ARGV[5])
save(header('p', 'j', now + tonumber(ARGV[4]), now + ttl, now, ARGV[3], ARGV[6]), ttl)
return false
