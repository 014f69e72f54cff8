-- A stream entry is dead: acknowledged, and its job written to the dead-letter list, together.
--
-- KEYS[1]  the stream
-- KEYS[2]  the dead-letter list
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry id
-- ARGV[3]  the dead-letter entry
-- Returns  1, or 0 when the entry was no longer pending
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[3])
return 1
