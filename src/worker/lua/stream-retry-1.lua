-- A stream entry failed and is retried: a copy with `retries` raised goes to the end of the stream and the original is
-- acknowledged, together, so the entry is neither lost nor pending twice.
--
-- KEYS[1]  the stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry id
-- ARGV[3..] the copy's field, value pairs
-- Returns  the copy's entry id, or false when the entry was no longer pending (acknowledged by a duplicate run)
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
return redis.call('XADD', KEYS[1], '*', unpack(fields))
