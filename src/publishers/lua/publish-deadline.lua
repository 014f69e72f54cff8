-- Prepended to publish-jobs.lua and publish-stream-entries.lua, after publish-marks.lua (see publishScript in
-- src/publishers/marked-batch.ts), so both destinations fence off late calls the same way.
--
-- ARGV[1]  deadline, milliseconds of this server's clock (TIME); 0 = none
--
-- The high-water marks (publish-marks.lua) make a re-run of a batch push nothing twice. One kind of write they cannot
-- judge: a call of an earlier attempt that reaches Redis late (held in the network, say), after that attempt gave up
-- and another relay re-ran and committed the batch, with some event of it parked for a retry. The deadline fences it
-- off: the relay sends the moment after which its attempt may have been rolled back (its publish timeout, its claim's
-- idle timeout), converted to this server's clock, and a call that arrives later writes nothing: it returns the error
-- reply "STALE ..." and touches nothing. `now` is left for the script, which returns it after its per-item replies
-- (the caller keeps its clock offset fresh with it).
local deadline = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if deadline > 0 and now > deadline then
  return redis.error_reply('STALE publish call arrived ' .. (now - deadline) .. ' ms after its deadline; nothing pushed')
end
