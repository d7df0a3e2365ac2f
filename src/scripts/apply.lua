-- Field-level write to a live session, with the slide, in one atomic step.
-- Keys: s session hash, d device set (bound sessions).
-- ARGV[2] idle ms, ARGV[3] handle, ARGV[4] expected version ('' = any),
-- ARGV[5] max user fields, ARGV[6] max session bytes, ARGV[7] touch interval
-- ms, ARGV[8..] ops (op, field, value)
-- The expiry slides as on a read: at most once per touch interval, with the
-- index upkeep, or when the write adds an index entry (scored with the new
-- expiry); in between, entries the write drops are removed.
-- Returns {0, version, expiry, now, absolute, increments...} on success,
-- {1} when the session is gone (nothing is written: no resurrection),
-- {2, version} on a version conflict, {3, field} when an increment hits a
-- non-integer, {4, count} when the field limit would be passed, {5, bytes}
-- when the session would grow past its size limit.
local key, set, handle = K.s, K.d, ARGV[3]
local FIRST = 8
local now = now_ms()
local meta, fields, count, bytes = split_hash(redis.call('HGETALL', key))
local abs = tonumber(meta._abs)
if not abs or abs <= now then
  bury(key, set, handle)
  return finish({ 1 })
end
local ver = tonumber(meta._ver) or 0
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= ver then
  return finish({ 2, ver })
end
local bad, state, incs = check_ops(fields, count, FIRST, tonumber(ARGV[5]), bytes,
  tonumber(ARGV[6]))
if bad then return finish(bad) end
local before = ix_entries(fields)
ver = ver + 1
write_ops(key, state, { '_ver', ver })
-- Without indexes all three stay empty.
local after, added, removed = before, before, before
if #IX > 0 then
  for field, value in pairs(state) do
    fields[field] = value or nil
  end
  after, added, removed = ix_entries(fields), {}, {}
  for e in pairs(after) do
    if not before[e] then added[e] = true end
  end
  for e in pairs(before) do
    if not after[e] then removed[e] = true end
  end
end
local exp
local ttl = redis.call('PTTL', key)
if next(added) or slide_due(ttl, tonumber(meta._seen), now, tonumber(ARGV[7])) then
  -- A new index entry is scored with the expiry: slide, so it is exact.
  exp = slide(key, set, handle, now, abs, tonumber(ARGV[2]), before, meta._user, after)
else
  -- No slide: the entries the write kept are scored right already.
  exp = now + ttl
  if next(removed) then ix_sync(sid_of(key), removed, {}, exp) end
end
local reply = { 0, ver, exp, now, abs }
for _, r in ipairs(incs) do reply[#reply + 1] = r end
return finish(reply)
