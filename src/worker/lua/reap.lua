-- The reaper's rule, go-redis-work-queue's: a processing list whose worker has no heartbeat belongs to a dead worker,
-- and its jobs go back to the queue of their `priority` (else the default priority's). Checked and moved in one
-- script, so a job is always in exactly one list, however many reapers run; oldest jobs end up nearest the consuming
-- end, in the order they were popped.
--
-- KEYS[1]     the processing list
-- KEYS[2]     its worker's heartbeat key
-- KEYS[3]     the registry of Node workers (hash: worker id -> return address), whose entry goes once the list is empty
-- KEYS[4..n]  the queues, in the order of ARGV[4..]
-- ARGV[1]     the worker id
-- ARGV[2]     the most jobs to move in this call
-- ARGV[3]     index (1-based, among the queues) of the default priority's queue
-- ARGV[4..]   the priority of each queue
-- Returns     -1 when the worker is alive, else the number of jobs moved (a full ARGV[2]: call again)
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local limit = tonumber(ARGV[2])
local default = 3 + tonumber(ARGV[3])
local queueOf = {}
for i = 4, #ARGV do queueOf[ARGV[i]] = i end
local moved = 0
while moved < limit do
  local job = redis.call('LPOP', KEYS[1])
  if not job then break end
  local dest = default
  local ok, decoded = pcall(cjson.decode, job)
  if ok and type(decoded) == 'table' and type(decoded.priority) == 'string' and queueOf[decoded.priority] then
    dest = queueOf[decoded.priority]
  end
  redis.call('RPUSH', KEYS[dest], job)
  moved = moved + 1
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HDEL', KEYS[3], ARGV[1]) end
return moved
