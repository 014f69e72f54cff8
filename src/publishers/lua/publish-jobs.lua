-- Push a batch of jobs, each at most once, in one round trip.
--
-- KEYS[1..L]        destination lists (L = ARGV[2])
-- KEYS[L+1..L+N]    one dedup marker per job, same order as the jobs
-- ARGV[1]           dedup window in seconds (marker TTL)
-- ARGV[2]           L
-- ARGV[3+3(i-1)..]  per job i: list index (1..L), aggregate token, job JSON
--
-- Per job: SET NX EX on its marker; only if the marker is new, LPUSH the job. Marker and push happen in the same
-- script, so a relay that crashes after this script ran (before marking the row in Postgres) re-runs it and finds
-- the marker: the job is never pushed twice within the window. A push that fails (e.g. WRONGTYPE) deletes its
-- marker and holds back the later jobs of the same aggregate, so order within an aggregate survives a failure.
-- Markers carry their list's hash tag, so on Redis Cluster every key of one call lives in one slot.
--
-- Returns per job: 1 pushed, 0 already pushed (marker existed), 2 held back, or an error string.
local ttl = ARGV[1]
local nLists = tonumber(ARGV[2])
local nJobs = #KEYS - nLists
local held = {}
local out = {}
for i = 1, nJobs do
  local base = 3 + (i - 1) * 3
  local agg = ARGV[base + 1]
  if held[agg] then
    out[i] = 2
  else
    local marker = KEYS[nLists + i]
    if redis.call('SET', marker, '1', 'NX', 'EX', ttl) then
      local pushed = redis.pcall('LPUSH', KEYS[tonumber(ARGV[base])], ARGV[base + 2])
      if type(pushed) == 'table' and pushed.err then
        redis.call('DEL', marker)
        held[agg] = true
        out[i] = 'ERR ' .. pushed.err
      else
        out[i] = 1
      end
    else
      out[i] = 0
    end
  end
end
return out
