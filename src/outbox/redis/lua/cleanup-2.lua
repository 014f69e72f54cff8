-- Delete retained history: published and failed events older than outbox.cleanup_after (src/outbox/redis/inspector.ts).
--
-- KEYS[1]  published (zset: id -> seq)
-- KEYS[2]  failed    (zset: id -> seq)
-- ARGV[1]  key prefix
-- ARGV[2]  age in ms: events created (and, if published, published) longer ago than this go
-- ARGV[3]  events looked at per set, at most
--
-- Like the Postgres cleanup (src/outbox/cleanup.ts) it walks each set in write order and stops at the first event that
-- is not old enough: seq follows write time, so what comes after it is newer. Pending events are never in these sets.
--
-- Returns { deleted, 1 if a set had more to look at (call again), else 0 }.
if redis.replicate_commands then redis.replicate_commands() end
local prefix = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local deleted = 0
local more = 0
for k = 1, 2 do
  local ids = redis.call('ZRANGE', KEYS[k], 0, limit - 1)
  local old = 0
  for _, id in ipairs(ids) do
    local ekey = prefix .. 'e:' .. id
    local e = redis.call('HMGET', ekey, 'c', 'pa')
    if (tonumber(e[1] or '0') >= cutoff) or (e[2] and tonumber(e[2]) >= cutoff) then break end
    redis.call('DEL', ekey)
    redis.call('ZREM', KEYS[k], id)
    old = old + 1
  end
  deleted = deleted + old
  if old == limit then more = 1 end
end
return { deleted, more }
