-- A job's effect is done: take it off the processing list and, when kept, onto the completed list
-- (go-redis-work-queue's `completed_list`, here trimmed to ARGV[2] entries so it cannot grow without end).
--
-- KEYS[1]  the worker's processing list
-- KEYS[2]  the completed list
-- ARGV[1]  the job text, exactly as popped
-- ARGV[2]  how many completed jobs to keep (0: none)
-- Returns  1, or 0 when the job was no longer there (a reaper returned it while this worker looked dead)
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
local keep = tonumber(ARGV[2])
if removed == 1 and keep > 0 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('LTRIM', KEYS[2], 0, keep - 1)
end
return removed
