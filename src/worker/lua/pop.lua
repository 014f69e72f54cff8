-- Reliable pop, in priority order: move up to ARGV[1] jobs into this worker's processing list, taking every job of
-- a queue before any of the next one (go-redis-work-queue's "high before low"). One round trip, whatever the number
-- of queues or jobs; a job is never outside a list, so a crash at any point leaves it to the reaper.
--
-- KEYS[1]     the worker's processing list
-- KEYS[2..n]  the queues, highest priority first
-- ARGV[1]     the most jobs to take
-- Returns     { queue index (0-based), job, queue index, job, ... }
local want = tonumber(ARGV[1])
local out = {}
local taken = 0
for i = 2, #KEYS do
  while taken < want do
    local job = redis.call('LMOVE', KEYS[i], KEYS[1], 'RIGHT', 'LEFT')
    if not job then break end
    out[#out + 1] = i - 2
    out[#out + 1] = job
    taken = taken + 1
  end
  if taken >= want then break end
end
return out
