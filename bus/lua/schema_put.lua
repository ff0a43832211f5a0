-- Adds a schema version to a type's schema hash (field = version number).
-- KEYS[1] the schema hash of one type
-- ARGV[1] the schema document (compact JSON)
-- Returns the new version, or minus the latest version when the document is
-- already the latest (nothing written: a restart that registers the same
-- schemas makes no new version).
local n = redis.call('HLEN', KEYS[1])
if n > 0 and redis.call('HGET', KEYS[1], tostring(n)) == ARGV[1] then
  return -n
end
redis.call('HSET', KEYS[1], tostring(n + 1), ARGV[1])
return n + 1
