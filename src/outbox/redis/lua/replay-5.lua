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
-- Rings the doorbell (`<prefix>doorbell`, as store.lua) when it replayed any, so every relay claims at once.
--
-- Returns the ids replayed.
local prefix = ARGV[1]
local done = {}
for i = 2, #ARGV, 2 do
  local id, agg = ARGV[i], ARGV[i + 1]
  local ekey = prefix .. 'e:' .. id
  if redis.call('HGET', ekey, 's') == 'failed' then
    local seq = tonumber(redis.call('HGET', ekey, 'q'))
    redis.call('HSET', ekey, 's', 'pending', 'r', 0)
    redis.call('HDEL', ekey, 'n')
    redis.call('ZREM', KEYS[5], id)
    redis.call('ZADD', KEYS[4], seq, id)
    local list = prefix .. 'a:' .. agg
    local ids = redis.call('LRANGE', list, 0, -1)
    local pivot
    for _, other in ipairs(ids) do
      if tonumber(redis.call('HGET', prefix .. 'e:' .. other, 'q')) > seq then
        pivot = other
        break
      end
    end
    if pivot then
      redis.call('LINSERT', list, 'BEFORE', pivot, id)
    else
      redis.call('RPUSH', list, id)
    end
    if not redis.call('ZSCORE', KEYS[3], agg) then
      local head = redis.call('LINDEX', list, 0)
      redis.call('ZREM', KEYS[2], agg)
      redis.call('ZADD', KEYS[1], redis.call('HGET', prefix .. 'e:' .. head, 'q'), agg)
    end
    done[#done + 1] = id
  end
end
if #done > 0 then redis.pcall('PUBLISH', prefix .. 'doorbell', '') end
return done
