-- One retention pass over one stream, atomic (bus/retention.go).
--
-- KEYS[1]  the stream
-- KEYS[2]  its loss hash (group -> entries removed before the group read them),
--          hash-tagged to the stream so both are in one cluster slot
-- ARGV[1]  keep length: trim to about this many entries, never below what a
--          group still needs; -1 = no length target
-- ARGV[2]  keep min id ("" = none): trim entries older than this id, never
--          below what a group still needs (with ARGV[1] -1 only)
-- ARGV[3]  count limit: the most entries one pass reads (XRANGE COUNT) to
--          count a group's true position or to find the trim point
-- ARGV[4]  "" for a full pass; a group name to only set that group's
--          baseline (right after the subscriber creates it) and trim nothing
--
-- 1. Loss accounting. Trims (XADD MAXLEN/MINID caps, anyone's XTRIM) remove a
--    prefix of the stream. entries-added minus length is how many entries
--    were ever removed. A group whose last-delivered id is older than the
--    first entry is logically at that count: what it had not read of them
--    is lost. A group that already read on past a trimmed range has an
--    entries-read that Redis 7.0 only incremented (the phantom lag); its true
--    position is entries-added minus the entries after its last-delivered id
--    (counted here, up to the count limit). The difference is added to the
--    loss hash and the group's counter is corrected with XGROUP SETID ...
--    ENTRIESREAD (same last id), so XINFO GROUPS lag is true again.
--    A group whose counter Redis does not know (nil entries-read: created
--    on an existing stream) gets its baseline set, with no loss counted.
-- 2. Safe trim. The oldest entry any group still needs is its oldest pending
--    entry, else the one after its last-delivered id. Entries older than the
--    keep target and older than that are removed with XTRIM MINID (exact).
--
-- Returns {removed_by_this_pass, group1, lost1, total1, group2, ...} for the
-- groups with a new loss.

local key, lostKey = KEYS[1], KEYS[2]
local keepLen, keepMinID, limit, only = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]

if redis.call('EXISTS', key) == 0 then return {0} end

local function kv(t)
  local m = {}
  for i = 1, #t, 2 do m[t[i]] = t[i + 1] end
  return m
end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then
    ms, seq = string.match(id, '^(%d+)$'), '0'
  end
  return tonumber(ms), tonumber(seq)
end

local function cmp(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end

local function nextID(id)
  local ms, seq = parse(id)
  return string.format('%d-%d', ms, seq + 1)
end

local info = kv(redis.call('XINFO', 'STREAM', key))
local len, added = info['length'], info['entries-added']
local removed = added - len
local firstID = nil
if len > 0 and info['first-entry'] then firstID = info['first-entry'][1] end

-- entriesAfter returns how many entries follow id, reading at most bound
-- (the group's reported lag, which is never below the true one) or limit
-- entries; nil when there are more than that.
local function entriesAfter(id, bound)
  local n = limit
  if bound ~= nil and bound < n then n = bound end
  if n <= 0 then return 0 end
  local es = redis.call('XRANGE', key, '(' .. id, '+', 'COUNT', n + 1)
  if #es > n then return nil end
  return #es
end

local out = {0}
local safe = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local m = kv(g)
  local name, last, read = m['name'], m['last-delivered-id'], m['entries-read']
  if only == '' or name == only then
  if type(read) ~= 'number' then read = nil end
  local truth = nil
  if firstID == nil or cmp(last, firstID) < 0 then
    -- Nothing retained has been read: the group is logically past every
    -- removed entry.
    truth = removed
    if read ~= nil and read > truth then truth = read end
  else
    local bound = nil
    if read ~= nil then bound = added - read end
    local after = entriesAfter(last, bound)
    if after ~= nil then truth = added - after end
  end
  if truth ~= nil and truth ~= read then
    redis.call('XGROUP', 'SETID', key, name, last, 'ENTRIESREAD', truth)
    if read ~= nil and truth > read then
      local total = redis.call('HINCRBY', lostKey, name, truth - read)
      table.insert(out, name)
      table.insert(out, truth - read)
      table.insert(out, total)
    end
  end
  local need
  if m['pending'] > 0 then
    need = redis.call('XPENDING', key, name)[2]
  else
    need = nextID(last)
  end
  if safe == nil or cmp(need, safe) < 0 then safe = need end
  end
end
if only ~= '' then return out end

-- The trim point: the keep target, but never past what a group needs.
local cut = nil
if keepLen >= 0 then
  local n = len - keepLen
  if n > 0 then
    local upto = '+'
    if safe ~= nil then upto = '(' .. safe end
    local es = redis.call('XRANGE', key, '-', upto, 'COUNT', math.min(n, limit))
    if #es > 0 then cut = nextID(es[#es][1]) end
  end
elseif keepMinID ~= '' then
  cut = keepMinID
  if safe ~= nil and cmp(safe, cut) < 0 then cut = safe end
end
if cut ~= nil then
  out[1] = redis.call('XTRIM', key, 'MINID', cut)
end
return out
