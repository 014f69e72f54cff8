-- Returns the live record or nil (an expired one is nil even before Redis or cleanup removes it).
local rec = load()
if rec then return rec.raw end
return false
