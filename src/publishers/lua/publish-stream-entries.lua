-- Append a batch of entries to Redis Streams, each at most once, in one round trip.
--
-- KEYS[1..S]            destination streams (S = ARGV[2])
-- KEYS[S+1..S+N]        one dedup marker per entry, same order as the entries
-- ARGV[1]               dedup window in milliseconds (marker PX)
-- ARGV[2]               S
-- ARGV[3]               deadline, milliseconds of this server's clock (TIME); 0 = none
-- ARGV[4]               MAXLEN ~ for every XADD; 0 = no trimming
-- ARGV[5]               F, the number of fields per entry
-- ARGV[6..5+F]          the field names, shared by every entry
-- ARGV[6+F+(2+F)(i-1)..] per entry i: stream index (1..S), aggregate token, then its F field values
--
-- Per entry: SET NX PX on its marker; only if the marker is new, XADD the entry (ID `*`: the stream's own order).
-- Marker and XADD happen in the same script, so a relay that crashes after this script ran (before marking the row
-- in Postgres) re-runs it and finds the marker: the entry is never appended twice within the window (G2).
--
-- Errors are captured per entry with redis.pcall, as in publish-jobs.lua: one event's WRONGTYPE fails that event and
-- holds back the later entries of its aggregate (G3), while the other aggregates of the call go out. An entry whose
-- SET or XADD fails gets the error text as its reply and loses its marker, so its retry can append.
--
-- Every key of one call is in one cluster slot: the caller groups entries by their stream's slot, and each marker is
-- named to land in its stream's slot (src/publishers/hash-tag.ts).
--
-- Markers do not outlive their use (issue 10): the relay deletes a batch's markers after COMMIT, and a call past its
-- deadline (ARGV[3]) is refused before this runs, exactly as for lists: see publish-deadline.lua, prepended to this
-- script.
--
-- Returns per entry: 1 appended, 0 already appended (marker existed), 2 held back, or the error text (a string);
-- then, after the entries, this server's clock in milliseconds (`now`, from publish-deadline.lua).
local window = ARGV[1]
local nStreams = tonumber(ARGV[2])
local maxlen = tonumber(ARGV[4])
local nFields = tonumber(ARGV[5])
local first = 6 + nFields
local nEntries = #KEYS - nStreams
local held = {}
local out = {}
for i = 1, nEntries do
  local base = first + (i - 1) * (2 + nFields)
  local agg = ARGV[base + 1]
  if held[agg] then
    out[i] = 2
  else
    local marker = KEYS[nStreams + i]
    local set = redis.pcall('SET', marker, '1', 'NX', 'PX', window)
    if type(set) == 'table' and set.err then
      held[agg] = true
      out[i] = set.err
    elseif set then
      local args = { 'XADD', KEYS[tonumber(ARGV[base])] }
      if maxlen > 0 then
        args[#args + 1] = 'MAXLEN'
        args[#args + 1] = '~'
        args[#args + 1] = maxlen
      end
      args[#args + 1] = '*'
      for f = 1, nFields do
        args[#args + 1] = ARGV[5 + f]
        args[#args + 1] = ARGV[base + 1 + f]
      end
      local added = redis.pcall(unpack(args))
      if type(added) == 'table' and added.err then
        -- redis.call, not pcall: if the marker cannot be removed the script must fail loudly, or the retry would
        -- find it and record an entry that was never appended as published.
        redis.call('DEL', marker)
        held[agg] = true
        out[i] = added.err
      else
        out[i] = 1
      end
    else
      out[i] = 0
    end
  end
end
out[nEntries + 1] = now
return out
