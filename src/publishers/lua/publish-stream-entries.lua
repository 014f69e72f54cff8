-- Append a batch of entries to Redis Streams, each at most once, in one round trip.
--
-- KEYS[1..S]            destination streams (S = ARGV[3])
-- KEYS[S+1..S+H]        high-water marks, one per lane and stream of the call (H = ARGV[4]; publish-marks.lua)
-- ARGV[1]               deadline, milliseconds of this server's clock (TIME); 0 = none (publish-deadline.lua)
-- ARGV[2]               mark lifetime in milliseconds (dedup window)
-- ARGV[3], ARGV[4]      S, H
-- ARGV[5..4+2H]         per mark: its lane's committed interval and position (-1: none), to prune it
-- ARGV[5+2H]            MAXLEN ~ for every XADD; 0 = no trimming
-- ARGV[6+2H]            F, the number of fields per entry
-- then F field names, shared by every entry
-- then per entry, 6 + F values: stream index (1..S), mark index (1..H, 0 = none), aggregate token, kind ('c', 's'
--                       or '-'), epoch, seq, then its F field values
--
-- Per entry: if its mark says an earlier attempt appended it, reply 0; else XADD it (ID `*`: the stream's own order)
-- and record the outcome in the mark, in the same script, exactly as publish-jobs.lua does for lists (G2). Errors are
-- captured per entry: one event's WRONGTYPE fails that event and holds back the later entries of its aggregate (G3),
-- while the other aggregates of the call go out.
--
-- Every key of one call is in one cluster slot (src/publishers/hash-tag.ts names each mark into its stream's slot).
--
-- Returns per entry: 1 appended, 0 already appended, 2 held back, or the error text (a string); then, after the
-- entries, this server's clock in milliseconds (`now`, from publish-deadline.lua).
local window = ARGV[2]
local nStreams = tonumber(ARGV[3])
local nMarks = tonumber(ARGV[4])
for h = 1, nMarks do
  marks[h] = loadMark(KEYS[nStreams + h], tonumber(ARGV[3 + 2 * h]), tonumber(ARGV[4 + 2 * h]))
end
local head = 5 + 2 * nMarks
local maxlen = tonumber(ARGV[head])
local nFields = tonumber(ARGV[head + 1])
local names = head + 2
local first = names + nFields
local stride = 6 + nFields
local nEntries = (#ARGV - first + 1) / stride
local held = {}
local out = {}
for i = 1, nEntries do
  local base = first + (i - 1) * stride
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
    local args = { 'XADD', KEYS[tonumber(ARGV[base])] }
    if maxlen > 0 then
      args[#args + 1] = 'MAXLEN'
      args[#args + 1] = '~'
      args[#args + 1] = maxlen
    end
    args[#args + 1] = '*'
    for f = 1, nFields do
      args[#args + 1] = ARGV[names + f - 1]
      args[#args + 1] = ARGV[base + 5 + f]
    end
    local added = redis.pcall(unpack(args))
    if type(added) == 'table' and added.err then
      held[agg] = true
      if mark then markRecord(mark, kind, seq, false) end
      out[i] = added.err
    else
      if mark then markRecord(mark, kind, seq, true) end
      out[i] = 1
    end
  end
end
saveMarks(window)
out[nEntries + 1] = now
return out
