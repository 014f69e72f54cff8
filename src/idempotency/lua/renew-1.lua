-- ARGV[3] token, ARGV[4] lease ms. Returns 1 when the holder's lease was extended, 0 when the claim was lost.
-- G4: the expiry (header and the key's or field's TTL) moves with the lease, never back, so the record outlives its TTL
-- while the processor runs.
local rec = load()
if not rec or rec.status ~= 'p' or rec.token ~= ARGV[3] then return 0 end
local lease = now + tonumber(ARGV[4])
local expires = math.max(rec.expires, lease)
save(header('p', 'j', lease, expires, rec.created, rec.token, rec.fingerprint), expires - now)
return 1
