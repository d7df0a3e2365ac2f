-- Field-level write to a live session, with the slide, in one atomic step.
-- KEYS[1] session hash, KEYS[2] device set (bound sessions only)
-- ARGV[1] idle ms, ARGV[2] handle, ARGV[3] expected version ('' = any),
-- ARGV[4] max user fields, ARGV[5..] ops (op, field, value)
-- Returns {0, version, expiry, now, absolute, increments...} on success,
-- {1} when the session is gone (nothing is written: no resurrection),
-- {2, version} on a version conflict, {3, field} when an increment hits a
-- non-integer, {4, count} when the field limit would be passed.
local key, set, handle = KEYS[1], KEYS[2], ARGV[2]
local now = now_ms()
local meta = redis.call('HMGET', key, '_abs', '_ver')
local abs = tonumber(meta[1])
if not abs or abs <= now then
  bury(key, set, handle)
  return { 1 }
end
local ver = tonumber(meta[2]) or 0
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= ver then
  return { 2, ver }
end
local function current(field)
  return redis.call('HGET', key, field)
end
local bad = check_ops(current, user_field_count(key), 5, tonumber(ARGV[4]))
if bad then return bad end
local results = apply_ops(key, 5)
ver = redis.call('HINCRBY', key, '_ver', 1)
local exp = slide(key, set, handle, now, abs, tonumber(ARGV[1]))
local reply = { 0, ver, exp, now, abs }
for _, r in ipairs(results) do reply[#reply + 1] = r end
return reply
