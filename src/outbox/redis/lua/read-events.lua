-- Read events for listings, the dashboard and replays, without copying large payloads (src/outbox/redis/event-rows.ts).
--
-- KEYS[i]  event hashes (`<prefix>e:<id>`), any number
--
-- An event whose payload is large (src/outbox/redis/stored-event.ts) has `dm`, the event without its payload, and
-- `pv` / `pb`, the payload's preview and size: `dm` is returned in place of `d`. Copying `d` into the script is what a
-- large payload costs (a script cannot read part of a field), and nothing here needs the whole payload.
--
-- Returns per key 11 values, nil where absent: `d` (or `dm`), q, c, s, r, n, x, pa, g, pv, pb.
local out = {}
local n = 0
for i = 1, #KEYS do
  local e = redis.call('HMGET', KEYS[i], 'dm', 'q', 'c', 's', 'r', 'n', 'x', 'pa', 'g', 'pv', 'pb')
  if not e[1] then e[1] = redis.call('HGET', KEYS[i], 'd') end
  for j = 1, 11 do out[n + j] = e[j] end
  n = n + 11
end
return out
