-- Counts as lost the pending entries of a consumer group whose stream entry
-- is gone (a retention cap, anyone's XTRIM or XDEL removed it after it was
-- delivered and before it was acked), before a claim would silently drop them
-- (XCLAIM on Redis 7 removes such ids from the PEL and does not return them).
--
-- KEYS[1]  the stream
-- KEYS[2]  its loss hash (Config.LossKey): group -> entries lost
-- ARGV[1]  the consumer group
-- ARGV[2…] the pending ids about to be claimed
--
-- Each gone id still pending is acked, which removes it from the PEL, so that
-- of several consumers claiming at once exactly one counts it. Idle time does
-- not matter: XCLAIM removes a gone id whatever its MIN-IDLE.
-- Returns {total lost by the group after this call, gone id, …}.
local gone = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if #redis.call('XRANGE', KEYS[1], id, id, 'COUNT', 1) == 0 and redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    gone[#gone + 1] = id
  end
end
local total = 0
if #gone > 0 then
  total = redis.call('HINCRBY', KEYS[2], ARGV[1], #gone)
end
table.insert(gone, 1, total)
return gone
