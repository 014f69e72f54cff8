-- ARGV[3] token, ARGV[4] lease ms, ARGV[5] ttl ms, ARGV[6] fingerprint (hex).
-- Returns nil when the caller now holds the key, else the record that blocks it (completed, or in progress with a live lease).
-- G4: an in-progress record is taken over only once its lease lapsed, never because its TTL ran out; and the new
-- record lasts at least as long as its lease, even for a key whose TTL is shorter.
local rec = load()
if rec and (rec.status == 'c' or rec.lease > now) then return rec.raw end
local lease = tonumber(ARGV[4])
local ttl = math.max(tonumber(ARGV[5]), lease)
save(header('p', 'j', now + lease, now + ttl, now, ARGV[3], ARGV[6]), ttl)
return false
