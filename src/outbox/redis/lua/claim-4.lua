-- Claim due aggregates for one relay, with a lease, and return their pending events (src/outbox/redis/relay.ts).
--
-- KEYS[1]  due      (zset: aggregate -> head seq)
-- KEYS[2]  delayed  (zset: aggregate -> retry due ms)
-- KEYS[3]  leases   (zset: aggregate -> lease end ms)
-- KEYS[4]  owners   (hash: aggregate -> relay token)
-- ARGV[1]  key prefix (event hashes `<prefix>e:<id>`, aggregate lists `<prefix>a:<aggregate>`)
-- ARGV[2]  this relay's token
-- ARGV[3]  lease in ms (outbox.claim_timeout)
-- ARGV[4]  aggregates looked at, at most (outbox.claim_window)
-- ARGV[5]  events claimed, at most (outbox.batch_size)
--
-- First, on the server's clock: aggregates whose retry is due move from `delayed` to `due`, and leases that ended
-- (a relay crashed or hung past claim_timeout) are taken back, so their aggregates can be claimed again (G5). Then the
-- oldest due aggregates are leased to this relay, each with its pending events from the head, until the batch is full.
-- Only one relay holds an aggregate at a time, and only its head may be published (move.lua checks both), so the
-- events of an aggregate leave in write order with any number of relays (G3).
--
-- An event whose hash is gone (evicted under an allkeys-* maxmemory-policy, a stray DEL) is failed where it stands
-- once it is its aggregate's head: left in the list it would look like a drained aggregate and strand every later
-- event. It keeps a small hash saying why (`x`) and which aggregate it was (`g`), so operators see it under failed.
-- The status sets `<prefix>pending` and `<prefix>failed` are named from the prefix, as the event hashes are.
--
-- Returns { now, then per event: aggregate, id, event JSON, seq, created ms, retry count }.
if redis.replicate_commands then redis.replicate_commands() end
local prefix = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local MISSING = 'event hash is missing (evicted under an allkeys-* maxmemory-policy, or deleted): its data is gone'
-- Missing heads failed per aggregate and call, at most: the script stays short; the aggregate stays due for the rest.
local MAX_MISSING = 1000

-- The aggregate's head after failing the missing ones; nil when drained; `more` when MAX_MISSING were not enough.
local function liveHead(agg)
  local list = prefix .. 'a:' .. agg
  for _ = 1, MAX_MISSING do
    local head = redis.call('LINDEX', list, 0)
    if not head then return nil end
    local ekey = prefix .. 'e:' .. head
    if redis.call('HEXISTS', ekey, 'q') == 1 then return head end
    local seq = redis.call('ZSCORE', prefix .. 'pending', head) or 0
    redis.call('LPOP', list)
    redis.call('ZREM', prefix .. 'pending', head)
    redis.call('ZADD', prefix .. 'failed', seq, head)
    redis.call('HSET', ekey, 'q', seq, 'c', now, 's', 'failed', 'r', 0, 'g', agg, 'x', MISSING)
  end
  return nil, true
end

local function headSeq(agg)
  local head, more = liveHead(agg)
  if not head then return nil, nil, more end
  local e = redis.call('HMGET', prefix .. 'e:' .. head, 'q', 'n')
  return e[1], e[2]
end

-- Put an unleased aggregate back where its head says: due now, later (a retry), or nowhere (drained).
local function requeue(agg)
  local seq, nextAt, more = headSeq(agg)
  if more then
    redis.call('ZREM', KEYS[2], agg)
    redis.call('ZADD', KEYS[1], 0, agg)
  elseif not seq then
    redis.call('ZREM', KEYS[1], agg)
    redis.call('ZREM', KEYS[2], agg)
  elseif nextAt and tonumber(nextAt) > now then
    redis.call('ZREM', KEYS[1], agg)
    redis.call('ZADD', KEYS[2], nextAt, agg)
  else
    redis.call('ZREM', KEYS[2], agg)
    redis.call('ZADD', KEYS[1], seq, agg)
  end
end

for _, agg in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[2], agg)
  if not redis.call('ZSCORE', KEYS[3], agg) then requeue(agg) end
end
for _, agg in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[3], agg)
  redis.call('HDEL', KEYS[4], agg)
  requeue(agg)
end

local out = { now }
local room = tonumber(ARGV[5])
local leaseEnd = now + tonumber(ARGV[3])
for _, agg in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)) do
  if room <= 0 then break end
  redis.call('ZREM', KEYS[1], agg)
  -- A stray `due` entry of a leased or delayed aggregate is dropped: its holder (or the retry) puts it back.
  local leased = redis.call('ZSCORE', KEYS[3], agg) or redis.call('ZSCORE', KEYS[2], agg)
  local _, nextAt, more = nil, nil, false
  if not leased then _, nextAt, more = headSeq(agg) end
  if more then
    redis.call('ZADD', KEYS[1], 0, agg)
  elseif nextAt and tonumber(nextAt) > now then
    redis.call('ZADD', KEYS[2], nextAt, agg)
  elseif not leased then
    local taken = 0
    for _, id in ipairs(redis.call('LRANGE', prefix .. 'a:' .. agg, 0, room - 1)) do
      local e = redis.call('HMGET', prefix .. 'e:' .. id, 'd', 'q', 'c', 'r')
      -- A hash gone behind the head: the claim stops there, and fails it once it is the head (liveHead).
      if not e[2] then break end
      out[#out + 1] = agg
      out[#out + 1] = id
      out[#out + 1] = e[1] or ''
      out[#out + 1] = e[2]
      out[#out + 1] = e[3] or '0'
      out[#out + 1] = e[4] or '0'
      taken = taken + 1
    end
    if taken > 0 then
      redis.call('ZADD', KEYS[3], leaseEnd, agg)
      redis.call('HSET', KEYS[4], agg, ARGV[2])
      room = room - taken
    end
  end
end
return out
