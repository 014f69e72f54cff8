-- Replay failed events: back to pending, retry count 0, due now, in their aggregate's write order
-- (src/outbox/redis/inspector.ts, `outbox retry`, POST /outbox/retry).
--
-- KEYS[1]  due      (zset: aggregate -> head seq)
-- KEYS[2]  delayed  (zset: aggregate -> retry due ms)
-- KEYS[3]  leases   (zset: aggregate -> lease end ms)
-- KEYS[4]  pending  (zset: id -> seq)
-- KEYS[5]  failed   (zset: id -> seq)
-- ARGV[1]  key prefix
-- ARGV[2i..2i+1]  per event: id, aggregate member
--
-- Only events still `failed` are touched (replaying a published one would publish it twice). Each goes back into its
-- aggregate's list before the first event written after it, so an aggregate's later events that are still pending
-- wait behind it, as in the Postgres outbox. A leased aggregate is left to its holder: its move finds a new head and
-- pushes nothing of that aggregate, and its release makes the aggregate due again.
--
-- Cost: the script runs alone (every other client waits), so it is linear in the events replayed, whatever the length
-- of their aggregates' lists. An aggregate's list is in seq order: its replayed events, sorted, are merged in at the
-- place two binary searches find (LINDEX, ZSCORE), and the list is rebuilt from the nearer end only, with bulk
-- LRANGE/LTRIM/LPUSH or RPUSH. The caller sends at most a few hundred events per call (inspector.ts).
--
-- Rings the doorbell (`<prefix>doorbell`, as store.lua) when it replayed any, so every relay claims at once.
--
-- Returns the ids replayed.
if redis.replicate_commands then redis.replicate_commands() end
local prefix = ARGV[1]
local PUSH_CHUNK = 1000

local function seqOf(id)
  local s = redis.call('ZSCORE', KEYS[4], id) or redis.call('HGET', prefix .. 'e:' .. id, 'q')
  return tonumber(s or 0)
end

-- Push `items` onto the list's head (`LPUSH`, so that items[1] ends first) or tail (`RPUSH`), in bulk.
local function push(command, list, items)
  if command == 'LPUSH' then
    local reversed = {}
    for k = #items, 1, -1 do reversed[#reversed + 1] = items[k] end
    items = reversed
  end
  for from = 1, #items, PUSH_CHUNK do
    redis.call(command, list, unpack(items, from, math.min(from + PUSH_CHUNK - 1, #items)))
  end
end

-- Entries of the list with a seq below `seq` (the list is in seq order).
local function countBelow(list, len, seq)
  local lo, hi = 0, len
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if seqOf(redis.call('LINDEX', list, mid)) < seq then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- Put `group` (sorted by seq) into the aggregate's list in seq order.
local function merge(agg, group)
  local list = prefix .. 'a:' .. agg
  local len = redis.call('LLEN', list)
  local lo = countBelow(list, len, group[1].seq)
  local hi = countBelow(list, len, group[#group].seq)
  -- The list's entries [lo, hi) interleave with the group; merge them.
  local merged, g = {}, 1
  if hi > lo then
    for _, id in ipairs(redis.call('LRANGE', list, lo, hi - 1)) do
      local s = seqOf(id)
      while g <= #group and group[g].seq < s do
        merged[#merged + 1] = group[g].id
        g = g + 1
      end
      merged[#merged + 1] = id
    end
  end
  for k = g, #group do merged[#merged + 1] = group[k].id end
  -- Replace [lo, hi) with `merged`, rebuilding the nearer end of the list.
  if lo <= len - hi then
    local head = lo > 0 and redis.call('LRANGE', list, 0, lo - 1) or {}
    redis.call('LTRIM', list, hi, -1)
    for _, id in ipairs(merged) do head[#head + 1] = id end
    push('LPUSH', list, head)
  else
    local tail = hi < len and redis.call('LRANGE', list, hi, -1) or {}
    redis.call('LTRIM', list, 0, lo - 1)
    for _, id in ipairs(tail) do merged[#merged + 1] = id end
    push('RPUSH', list, merged)
  end
  if not redis.call('ZSCORE', KEYS[3], agg) then
    redis.call('ZREM', KEYS[2], agg)
    redis.call('ZADD', KEYS[1], seqOf(redis.call('LINDEX', list, 0)), agg)
  end
end

local groups, order, done = {}, {}, {}
for i = 2, #ARGV, 2 do
  local id, agg = ARGV[i], ARGV[i + 1]
  local ekey = prefix .. 'e:' .. id
  local e = redis.call('HMGET', ekey, 's', 'q')
  if e[1] == 'failed' and e[2] then
    local seq = tonumber(e[2])
    redis.call('HSET', ekey, 's', 'pending', 'r', 0)
    redis.call('HDEL', ekey, 'n')
    redis.call('ZREM', KEYS[5], id)
    redis.call('ZADD', KEYS[4], seq, id)
    if not groups[agg] then
      groups[agg] = {}
      order[#order + 1] = agg
    end
    local group = groups[agg]
    group[#group + 1] = { seq = seq, id = id }
    done[#done + 1] = id
  end
end
for _, agg in ipairs(order) do
  local group = groups[agg]
  table.sort(group, function(a, b) return a.seq < b.seq end)
  merge(agg, group)
end
if #done > 0 then redis.pcall('PUBLISH', prefix .. 'doorbell', '') end
return done
