-- ARGV[3] token, ARGV[4] ttl ms, ARGV[5] encoding (j|z), ARGV[6] payload.
-- Returns 1 when the holder's claim became a completed record, 0 when the claim was lost.
local rec = load()
if not rec or rec.status ~= 'p' or rec.token ~= ARGV[3] then return 0 end
local ttl = tonumber(ARGV[4])
save(header('c', ARGV[5], 0, now + ttl, rec.created, '', rec.fingerprint) .. ARGV[6], ttl)
return 1
