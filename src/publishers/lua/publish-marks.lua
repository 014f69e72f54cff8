-- Prepended to publish-jobs.lua and publish-stream-entries.lua (see publishScript in src/publishers/marked-batch.ts):
-- the high-water marks that make each event's write happen once (G2) with a fixed number of keys.
--
-- A relay reads a lane of the outbox in an order that never changes once read (migrations/0009): interval by
-- interval, each in write order (seq), and a batch's parked events (retries) in park order under the lane's batch
-- number. So "was this event already written here?" is answered by one hash per lane and destination, kept in the
-- destination's slot and written by the same script that writes the events:
--
--   ce, cx, cn   interval events: the interval last written to (k), the highest seq of it attempted, and the seqs
--                at or below cx that were NOT written (failed, held back), comma-separated
--   se, sx, sn   parked events: the same under the lane's batch number (b)
--
-- An item is already written when its epoch (k or b) is below the mark's (a later interval or batch was written to,
-- so this one's outcome is committed), or equal with its seq at or below the highest attempted and not listed as not
-- written. A batch re-run after a crash between the write and the COMMIT therefore writes only what the first run did
-- not, including the events the first run failed or held back (the mixed batch). The relay passes each mark's lane
-- cursor as committed (its interval and position) so the not-written list never keeps seqs already settled in
-- Postgres. A mark expires after the dedup window of idleness (ARGV[2]).
local marks = {}

local function parseSet(text)
  local set = {}
  if text then
    for v in string.gmatch(text, '[^,]+') do set[tonumber(v)] = true end
  end
  return set
end

local function fmt(n)
  return string.format('%.0f', n)
end

local function joinSet(set)
  local list = {}
  for v in pairs(set) do list[#list + 1] = v end
  table.sort(list)
  for i, v in ipairs(list) do list[i] = fmt(v) end
  return table.concat(list, ',')
end

-- Load mark h (KEYS[base + h]) and drop not-written seqs at or below the committed position of its interval.
local function loadMark(key, committedEpoch, committedPos)
  local v = redis.call('HMGET', key, 'ce', 'cx', 'cn', 'se', 'sx', 'sn')
  local mark = {
    key = key,
    dirty = false,
    c = { e = tonumber(v[1]) or -1, x = tonumber(v[2]) or -1, np = parseSet(v[3]) },
    s = { e = tonumber(v[4]) or -1, x = tonumber(v[5]) or -1, np = parseSet(v[6]) },
  }
  if mark.c.e == committedEpoch and committedPos >= 0 then
    for seq in pairs(mark.c.np) do
      if seq <= committedPos then
        mark.c.np[seq] = nil
        mark.dirty = true
      end
    end
  end
  return mark
end

-- 'written' when an earlier attempt wrote this item; otherwise 'new' (the part moves to this epoch first).
local function markState(mark, kind, epoch, seq)
  local part = mark[kind]
  if epoch < part.e then return 'written' end
  if epoch > part.e then
    part.e = epoch
    part.x = -1
    part.np = {}
    mark.dirty = true
  end
  if seq <= part.x and not part.np[seq] then return 'written' end
  return 'new'
end

-- Record the outcome of a 'new' item: written or not.
local function markRecord(mark, kind, seq, written)
  local part = mark[kind]
  if written then part.np[seq] = nil else part.np[seq] = true end
  if seq > part.x then part.x = seq end
  mark.dirty = true
end

local function saveMarks(window)
  for _, mark in pairs(marks) do
    if mark.dirty then
      redis.call('HSET', mark.key, 'ce', fmt(mark.c.e), 'cx', fmt(mark.c.x), 'cn', joinSet(mark.c.np),
        'se', fmt(mark.s.e), 'sx', fmt(mark.s.x), 'sn', joinSet(mark.s.np))
      redis.call('PEXPIRE', mark.key, window)
    end
  end
end
