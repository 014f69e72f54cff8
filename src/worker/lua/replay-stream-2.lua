-- Replay a dead stream job: out of the dead-letter list and back onto its stream as a new entry, together.
--
-- KEYS[1]   the dead-letter list
-- KEYS[2]   the stream
-- ARGV[1]   the dead-letter entry, exactly
-- ARGV[2..] the new entry's field, value pairs
-- Returns   1 if replayed, 0 if the entry was not in the list any more
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
return 1
