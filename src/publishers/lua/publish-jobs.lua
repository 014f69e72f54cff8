-- Push a batch of jobs, each at most once, in one round trip.
--
-- KEYS[1..L]        destination lists (L = ARGV[3])
-- KEYS[L+1..L+H]    high-water marks, one per lane and list of the call (H = ARGV[4]; publish-marks.lua)
-- ARGV[1]           deadline, milliseconds of this server's clock (TIME); 0 = none (publish-deadline.lua)
-- ARGV[2]           mark lifetime in milliseconds (dedup window)
-- ARGV[3], ARGV[4]  L, H
-- ARGV[5..4+2H]     per mark: its lane's committed interval and position (-1: none), to prune it
-- then per job, 7 values: list index (1..L), mark index (1..H, 0 = none), aggregate token, kind ('c' interval
--                   event, 's' parked event, '-' none), epoch (interval or batch number), seq, job JSON
--
-- Per job: if its mark says an earlier attempt pushed it, reply 0 and push nothing; else LPUSH it and record the
-- outcome in the mark. Marks and pushes happen in the same script, so a relay that crashes after this script ran
-- (before its COMMIT) re-runs the batch and pushes only what this call did not (G2).
--
-- Errors are captured per job with redis.pcall and never raised: a raised error would fail every job of the call,
-- so one event's WRONGTYPE would stop the whole batch, and, that event being the oldest, every batch after it. A job
-- whose LPUSH fails gets the error text as its reply, is recorded as not pushed, and holds back the later jobs of its
-- aggregate, so order within an aggregate survives a failure (G3). What an error means is decided in Node
-- (src/publishers/publish-errors.ts): the server's state (OOM when full, READONLY, ...) fails the batch as an
-- outage; anything else (WRONGTYPE, ...) is that event's own failure.
--
-- Every key of one call is in one cluster slot: the caller groups jobs by their list's slot, and each mark is named
-- to land in its list's slot (src/publishers/hash-tag.ts).
--
-- Returns per job: 1 pushed, 0 already pushed, 2 held back, or the error text (a string); then, after the jobs,
-- this server's clock in milliseconds (`now`, from publish-deadline.lua).
local window = ARGV[2]
local nLists = tonumber(ARGV[3])
local nMarks = tonumber(ARGV[4])
for h = 1, nMarks do
  marks[h] = loadMark(KEYS[nLists + h], tonumber(ARGV[3 + 2 * h]), tonumber(ARGV[4 + 2 * h]))
end
local first = 5 + 2 * nMarks
local nJobs = (#ARGV - first + 1) / 7
local held = {}
local out = {}
for i = 1, nJobs do
  local base = first + (i - 1) * 7
  local agg = ARGV[base + 2]
  local mark = marks[tonumber(ARGV[base + 1])]
  local kind = ARGV[base + 3]
  local epoch = tonumber(ARGV[base + 4])
  local seq = tonumber(ARGV[base + 5])
  if mark and markState(mark, kind, epoch, seq) == 'written' then
    out[i] = 0
  elseif held[agg] then
    if mark then markRecord(mark, kind, seq, false) end
    out[i] = 2
  else
    local pushed = redis.pcall('LPUSH', KEYS[tonumber(ARGV[base])], ARGV[base + 6])
    if type(pushed) == 'table' and pushed.err then
      held[agg] = true
      if mark then markRecord(mark, kind, seq, false) end
      out[i] = pushed.err
    else
      if mark then markRecord(mark, kind, seq, true) end
      out[i] = 1
    end
  end
end
saveMarks(window)
out[nJobs + 1] = now
return out
