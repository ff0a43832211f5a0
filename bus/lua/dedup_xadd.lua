-- Writes one entry unless its event id was written to the stream within the
-- deduplication window, atomically (bus/dedup.go).
-- KEYS[1] the stream; KEYS[2] the dedup key of (stream, event id), hash-tagged
-- to the stream so that both are in one cluster slot.
-- ARGV[1] the window in milliseconds; ARGV[2..] the XADD arguments after the
-- key (trim options, "*", field/value pairs), as go-redis builds them.
-- Returns {1, new entry id} when written, {0, entry id of the earlier write}
-- when the id is a duplicate.
--
-- The key is set after the XADD, not with SET NX before it: a script is not
-- rolled back, so an XADD that fails after a SET NX would leave the id marked
-- as written, and the publisher's retry would then be dropped: a loss.
local prev = redis.call('GET', KEYS[2])
if prev then
  return {0, prev}
end
local id = redis.call('XADD', KEYS[1], unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {1, id}
