-- Hash mode cleanup. ARGV[3..n]: fields the caller saw expired. Each is re-checked here, atomically, so a field
-- that was claimed again in between survives, and so does an in-progress one under a live lease (G4).
-- Returns how many fields were deleted.
local removed = 0
for i = 3, #ARGV do
  field = ARGV[i]
  local raw = redis.call('HGET', key, field)
  if raw then
    local status, lease, expires = string.match(raw, '^eo1|(%a)|%a|(%d+)|(%d+)|')
    if status and over(status, tonumber(lease), tonumber(expires)) then
      redis.call('HDEL', key, field)
      removed = removed + 1
    end
  end
end
return removed
