-- Moves the due events of one schedule onto their stream, atomically.
-- KEYS[1] schedule (sorted set: member event id, score due ms)
-- KEYS[2] schedule data (hash: event id -> netstring-encoded stream fields)
-- KEYS[3] the stream
-- ARGV[1] how many at most; ARGV[2] trim mode ("maxlen", "minid" or "");
-- ARGV[3] trim value; ARGV[4..6] the room, user and broadcast field names.
-- Returns {moved, {encoded fields of each moved event addressed to browsers}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local pushed = {}
for _, id in ipairs(ids) do
  local enc = redis.call('HGET', KEYS[2], id)
  if enc then
    local args = {KEYS[3]}
    if ARGV[2] == 'maxlen' then
      args = {KEYS[3], 'MAXLEN', '~', ARGV[3]}
    elseif ARGV[2] == 'minid' then
      args = {KEYS[3], 'MINID', '~', ARGV[3]}
    end
    args[#args + 1] = '*'
    local first = #args + 1
    local pos = 1
    while pos <= #enc do
      local c = string.find(enc, ':', pos, true)
      local n = tonumber(string.sub(enc, pos, c - 1))
      args[#args + 1] = string.sub(enc, c + 1, c + n)
      pos = c + n + 1
    end
    redis.call('XADD', unpack(args))
    for i = first, #args - 1, 2 do
      local k, v = args[i], args[i + 1]
      if ((k == ARGV[4] or k == ARGV[5]) and v ~= '') or (k == ARGV[6] and v == 'true') then
        pushed[#pushed + 1] = enc
        break
      end
    end
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return {#ids, pushed}
