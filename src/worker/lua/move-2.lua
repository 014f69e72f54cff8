-- Move one job from a list to another, rewritten on the way: a retry (processing list -> its queue, `retries`
-- raised), a dead job (processing list -> dead-letter list), a replay (dead-letter list -> a queue). Only a job still
-- in the source moves, so two movers never make two copies.
--
-- KEYS[1]  the source list
-- KEYS[2]  the destination list
-- ARGV[1]  the job text in the source, exactly
-- ARGV[2]  the text to write into the destination
-- ARGV[3]  'back' (LPUSH: behind the waiting jobs, as a new job) or 'front' (RPUSH: popped next)
-- Returns  1 if moved, 0 if the job was not in the source
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
if ARGV[3] == 'front' then
  redis.call('RPUSH', KEYS[2], ARGV[2])
else
  redis.call('LPUSH', KEYS[2], ARGV[2])
end
return 1
