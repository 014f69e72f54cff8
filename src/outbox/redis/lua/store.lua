-- Store a batch of events in the outbox, inside the application's MULTI/EXEC (src/outbox/redis/writer.ts).
--
-- KEYS[1]            seq (INCR counter)
-- KEYS[2]            due      (zset: aggregate -> head seq)
-- KEYS[3]            delayed  (zset: aggregate -> retry due ms)
-- KEYS[4]            leases   (zset: aggregate -> lease end ms)
-- KEYS[5]            pending  (zset: id -> seq)
-- KEYS[5+i]          event hash of event i        (i = 1..N, N = (#KEYS - 5) / 2)
-- KEYS[5+N+i]        aggregate list of event i
-- ARGV[6(i-1)+1..6]  per event i: id, event JSON (`d`), aggregate member, then for a large payload the event without
--                    it (`dm`), the payload's preview (`pv`) and size (`pb`), else three empty strings (stored-event.ts)
-- ARGV[6N+1]         doorbell channel
--
-- Runs only if EXEC runs: a DISCARDed transaction, or one whose WATCHed key changed, never reaches the server's script
-- engine, so its events are never stored and never published (G1). All or nothing: if one id is already stored,
-- nothing of this call is written and the call's reply is an error (EXEC still applies the app's other commands;
-- Redis has no rollback). The writer checks ids within a call before queueing it.
--
-- An aggregate held by a relay (leases) or waiting for a retry (delayed) is not made due here: the lease holder, or
-- the claim that promotes the retry, puts it back with the right score.
--
-- When an aggregate becomes due here, the doorbell is rung once (PUBLISH, after every write) so sleeping relays claim at
-- once instead of at their next poll. Only then: an aggregate already due, leased or delayed has a relay (or a retry
-- timer) that comes back for it anyway. PUBLISH, not SPUBLISH: it reaches a subscriber on any node of a cluster. Through
-- pcall: a doorbell the app's ACL user may not ring (NOPERM on the channel) must not fail its transaction; the relays
-- then find the event at their next poll.
--
-- Returns the seq of each event, in order.
if redis.replicate_commands then redis.replicate_commands() end
local n = (#KEYS - 5) / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[5 + i]) == 1 then
    return redis.error_reply('EO_OUTBOX_DUPLICATE_ID event id ' .. ARGV[6 * (i - 1) + 1] .. ' is already in the outbox')
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seqs = {}
local ring = false
for i = 1, n do
  local b = 6 * (i - 1)
  local id = ARGV[b + 1]
  local agg = ARGV[b + 3]
  local seq = redis.call('INCR', KEYS[1])
  redis.call('HSET', KEYS[5 + i], 'd', ARGV[b + 2], 'q', seq, 'c', now, 's', 'pending')
  if ARGV[b + 4] ~= '' then redis.call('HSET', KEYS[5 + i], 'dm', ARGV[b + 4], 'pv', ARGV[b + 5], 'pb', ARGV[b + 6]) end
  redis.call('RPUSH', KEYS[5 + n + i], id)
  redis.call('ZADD', KEYS[5], seq, id)
  if not redis.call('ZSCORE', KEYS[4], agg) and not redis.call('ZSCORE', KEYS[3], agg) then
    if redis.call('ZADD', KEYS[2], 'NX', seq, agg) == 1 then ring = true end
  end
  seqs[i] = seq
end
if ring then redis.pcall('PUBLISH', ARGV[6 * n + 1], '') end
return seqs
