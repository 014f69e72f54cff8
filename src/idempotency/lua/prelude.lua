-- Shared head of every idempotency script (prepended at load time; Redis scripts cannot include files).
-- KEYS[1]: the record's key (plain mode) or its queue+tenant hash (hash mode).
-- ARGV[1]: '' in plain mode, else the hash field.  ARGV[2]: '1' when the server has HPEXPIRE (Redis >= 7.4).
--
-- A record is one string: 'eo1|<status p|c>|<encoding j|z>|<lease ms>|<expires ms>|<created ms>|<token hex>|<fingerprint hex>|'
-- followed by the result payload. Times are this server's TIME, so every client agrees on leases whatever its clock.
-- Expiry lives in the header too, because a hash field has no TTL of its own before Redis 7.4.
-- G4: an in-progress record is governed by its lease alone. Its expiry (header and key/field TTL) is kept at or after
-- its lease end, by claim and by every renewal, and it counts as live while its lease does; otherwise a processor that
-- runs longer than the key's TTL, renewing all along, would lose its key to a duplicate (a second run) or to cleanup.
local key, field = KEYS[1], ARGV[1]
local hexpire = ARGV[2] == '1'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function ms(n)
  return string.format('%.0f', n)
end

local function header(status, encoding, lease, expires, created, token, fingerprint)
  return 'eo1|' .. status .. '|' .. encoding .. '|' .. ms(lease) .. '|' .. ms(expires) .. '|' .. ms(created) .. '|'
    .. token .. '|' .. fingerprint .. '|'
end

-- G4: expired, and (while in progress) out of its lease too.
local function over(status, lease, expires)
  return expires <= now and (status ~= 'p' or lease <= now)
end

-- The live record, or nil when absent, over or not ours.
local function load()
  local raw
  if field == '' then raw = redis.call('GET', key) else raw = redis.call('HGET', key, field) end
  if not raw then return nil end
  local status, lease, expires, created, token, fingerprint =
    string.match(raw, '^eo1|(%a)|%a|(%d+)|(%d+)|(%d+)|(%x*)|(%x*)|')
  if not status or over(status, tonumber(lease), tonumber(expires)) then return nil end
  return { raw = raw, status = status, lease = tonumber(lease), expires = tonumber(expires),
           created = tonumber(created), token = token, fingerprint = fingerprint }
end

local function save(value, ttl)
  if field == '' then
    redis.call('SET', key, value, 'PX', ttl)
  else
    redis.call('HSET', key, field, value)
    if hexpire then redis.call('HPEXPIRE', key, ttl, 'FIELDS', 1, field) end
    -- The hash lives as long as its longest-lived field, so an abandoned queue+tenant disappears on its own.
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  end
end

local function remove()
  if field == '' then redis.call('DEL', key) else redis.call('HDEL', key, field) end
end
