-- ARGV[3] token, ARGV[4] lease ms. Returns 1 when the holder's lease was extended, 0 when the claim was lost.
local rec = load()
if not rec or rec.status ~= 'p' or rec.token ~= ARGV[3] then return 0 end
save(header('p', 'j', now + tonumber(ARGV[4]), rec.expires, rec.created, rec.token, rec.fingerprint), rec.expires - now)
return 1
