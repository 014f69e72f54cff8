-- Push a batch of jobs, each at most once, in one round trip.
--
-- KEYS[1..L]        destination lists (L = ARGV[2])
-- KEYS[L+1..L+N]    one dedup marker per job, same order as the jobs
-- ARGV[1]           dedup window in milliseconds (marker PX)
-- ARGV[2]           L
-- ARGV[3]           deadline, milliseconds of this server's clock (TIME); 0 = none
-- ARGV[4+3(i-1)..]  per job i: list index (1..L), aggregate token, job JSON
--
-- Per job: SET NX PX on its marker; only if the marker is new, LPUSH the job. Marker and push happen in the same
-- script, so a relay that crashes after this script ran (before marking the row in Postgres) re-runs it and finds
-- the marker: the job is never pushed twice within the window (G2).
--
-- Errors are captured per job with redis.pcall and never raised: a raised error would fail every job of the call,
-- so one event's WRONGTYPE would stop the whole batch, and, that event being the oldest, every batch after it. A job
-- whose SET or LPUSH fails gets the error text as its reply, loses its marker (so its retry can push) and holds
-- back the later jobs of its aggregate, so order within an aggregate survives a failure (G3). What an error means
-- is decided in Node (src/publishers/publish-errors.ts): the server's state (OOM when full, READONLY, ...) fails
-- the batch as an outage; anything else (WRONGTYPE, ...) is that event's own failure.
--
-- Every key of one call is in one cluster slot: the caller groups jobs by their list's slot, and each marker is
-- named to land in its list's slot (src/publishers/hash-tag.ts).
--
-- A call past its deadline (ARGV[3]) is refused before this runs: see publish-deadline.lua, prepended to this script.
--
-- Returns per job: 1 pushed, 0 already pushed (marker existed), 2 held back, or the error text (a string); then,
-- after the jobs, this server's clock in milliseconds (`now`, from publish-deadline.lua).
local window = ARGV[1]
local nLists = tonumber(ARGV[2])
local nJobs = #KEYS - nLists
local held = {}
local out = {}
for i = 1, nJobs do
  local base = 4 + (i - 1) * 3
  local agg = ARGV[base + 1]
  if held[agg] then
    out[i] = 2
  else
    local marker = KEYS[nLists + i]
    local set = redis.pcall('SET', marker, '1', 'NX', 'PX', window)
    if type(set) == 'table' and set.err then
      held[agg] = true
      out[i] = set.err
    elseif set then
      local pushed = redis.pcall('LPUSH', KEYS[tonumber(ARGV[base])], ARGV[base + 2])
      if type(pushed) == 'table' and pushed.err then
        -- redis.call, not pcall: if the marker cannot be removed the script must fail loudly, or the retry would
        -- find it and record a job that was never pushed as published.
        redis.call('DEL', marker)
        held[agg] = true
        out[i] = pushed.err
      else
        out[i] = 1
      end
    else
      out[i] = 0
    end
  end
end
out[nJobs + 1] = now
return out
