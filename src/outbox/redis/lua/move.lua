-- Publish claimed events: push each onto its destination list and mark it, in one script (src/outbox/redis/relay.ts).
--
-- KEYS[1]      leases    (zset: aggregate -> lease end ms)
-- KEYS[2]      owners    (hash: aggregate -> relay token)
-- KEYS[3]      due       (zset: aggregate -> head seq)
-- KEYS[4]      delayed   (zset: aggregate -> retry due ms)
-- KEYS[5]      pending   (zset: id -> seq)
-- KEYS[6]      published (zset: id -> seq)
-- KEYS[7]      failed    (zset: id -> seq)
-- KEYS[7+j]    destination lists (j = 1..L)
-- ARGV[1]      key prefix
-- ARGV[2]      this relay's token
-- ARGV[3+6(i-1)..]  per event i, in claim order: aggregate, id, list index (1..L; 0 = do not push, fail with the
--              text), job JSON (or the error text), retry delay ms, 1 if the failure is permanent / max retries
--
-- The push and the mark are one script on one server, so an event is on its list if and only if it is marked
-- published: no dedup marker is needed, and a relay killed at any point leaves no half-done event (G2). Before each
-- push the script checks that this relay still holds the aggregate's lease and that the event is still the head of
-- its aggregate's list and pending; a relay whose lease was taken over (it hung past claim_timeout) pushes nothing.
--
-- A push that fails (WRONGTYPE: the destination key holds a wrong type, ...) is that event's failure: it is retried
-- after the delay given, or marked failed (the last ARGV of the event says which; a failed event's hash also records
-- its aggregate, `g`, which an unreadable event's data cannot tell), and the later events of its aggregate wait (G3). A failure that is the server's state (OOM, READONLY, ... as in src/publishers/publish-errors.ts)
-- stops the call: nothing more is pushed or counted, and the error text is returned for the relay to back off.
--
-- Finally every aggregate of the call that this relay holds is released: due again (by its head's seq), delayed until
-- its head's retry, or dropped when drained.
--
-- Returns per event: 1 published, 2 held (an earlier event of its aggregate did not go, or the call stopped), 3 lost
-- (lease or head no longer ours), 4 failed for good, 5 retry scheduled; then the stopping error text, or false.
if redis.replicate_commands then redis.replicate_commands() end
local prefix = ARGV[1]
local token = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local OUTAGE = { LOADING = 1, BUSY = 1, OOM = 1, READONLY = 1, MASTERDOWN = 1, NOREPLICAS = 1, MISCONF = 1,
  CLUSTERDOWN = 1, TRYAGAIN = 1, MOVED = 1, ASK = 1, NOAUTH = 1, WRONGPASS = 1 }
local function outage(text)
  local code = string.match(text, '^(%S+)') or text
  if code == 'NOPERM' then return not string.find(string.lower(text), 'key') end
  return OUTAGE[code] == 1
end

local n = (#ARGV - 2) / 6
local out = {}
local held = {}
local seen = {}
local order = {}
local stop = false
for i = 1, n do
  local b = 3 + 6 * (i - 1)
  local agg, id = ARGV[b], ARGV[b + 1]
  if not seen[agg] then
    seen[agg] = true
    order[#order + 1] = agg
  end
  local ekey = prefix .. 'e:' .. id
  local list = prefix .. 'a:' .. agg
  if stop or held[agg] then
    out[i] = 2
  elseif redis.call('HGET', KEYS[2], agg) ~= token or redis.call('LINDEX', list, 0) ~= id
      or redis.call('HGET', ekey, 's') ~= 'pending' then
    held[agg] = true
    out[i] = 3
  else
    local err
    local idx = tonumber(ARGV[b + 2])
    if idx > 0 then
      local pushed = redis.pcall('LPUSH', KEYS[7 + idx], ARGV[b + 3])
      if type(pushed) == 'table' and pushed.err then err = pushed.err end
    else
      err = ARGV[b + 3]
    end
    local seq = redis.call('HGET', ekey, 'q')
    if not err then
      redis.call('LPOP', list)
      redis.call('HSET', ekey, 's', 'published', 'pa', now)
      redis.call('ZREM', KEYS[5], id)
      redis.call('ZADD', KEYS[6], seq, id)
      out[i] = 1
    elseif idx > 0 and outage(err) then
      stop = err
      out[i] = 2
    else
      held[agg] = true
      local retries = tonumber(redis.call('HGET', ekey, 'r') or '0') + 1
      if ARGV[b + 5] == '1' then
        redis.call('LPOP', list)
        redis.call('HSET', ekey, 's', 'failed', 'r', retries, 'x', err, 'g', agg)
        redis.call('HDEL', ekey, 'n')
        redis.call('ZREM', KEYS[5], id)
        redis.call('ZADD', KEYS[7], seq, id)
        out[i] = 4
      else
        redis.call('HSET', ekey, 'r', retries, 'x', err, 'n', now + tonumber(ARGV[b + 4]))
        out[i] = 5
      end
    end
  end
end

for _, agg in ipairs(order) do
  if redis.call('HGET', KEYS[2], agg) == token then
    redis.call('ZREM', KEYS[1], agg)
    redis.call('HDEL', KEYS[2], agg)
    local head = redis.call('LINDEX', prefix .. 'a:' .. agg, 0)
    if head then
      local e = redis.call('HMGET', prefix .. 'e:' .. head, 'q', 'n')
      if e[2] and tonumber(e[2]) > now then
        redis.call('ZADD', KEYS[4], e[2], agg)
      else
        -- A head whose hash is gone has no seq: due first, so the next claim fails it (claim-4.lua).
        redis.call('ZADD', KEYS[3], e[1] or 0, agg)
      end
    end
  end
end
out[n + 1] = stop
return out
