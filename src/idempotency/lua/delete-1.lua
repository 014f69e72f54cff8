-- Returns 1 when a live record was deleted, else 0 (an expired leftover is removed all the same).
local rec = load()
remove()
if rec then return 1 end
return 0
