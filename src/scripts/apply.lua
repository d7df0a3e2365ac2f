-- Field-level write to a live session, with the slide, in one atomic step.
-- Keys: s session hash, d device set (bound sessions).
-- ARGV[2] idle ms, ARGV[3] handle, ARGV[4] expected version ('' = any),
-- ARGV[5] max user fields, ARGV[6] max session bytes, ARGV[7..] ops
-- (op, field, value)
-- Returns {0, version, expiry, now, absolute, increments...} on success,
-- {1} when the session is gone (nothing is written: no resurrection),
-- {2, version} on a version conflict, {3, field} when an increment hits a
-- non-integer, {4, count} when the field limit would be passed, {5, bytes}
-- when the session would grow past its size limit.
local key, set, handle = K.s, K.d, ARGV[3]
local now = now_ms()
local meta = redis.call('HMGET', key, '_abs', '_ver', '_user')
local abs = tonumber(meta[1])
if not abs or abs <= now then
  bury(key, set, handle)
  return finish({ 1 })
end
local ver = tonumber(meta[2]) or 0
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= ver then
  return finish({ 2, ver })
end
local function current(field)
  return redis.call('HGET', key, field)
end
local count, bytes = user_size(key)
local bad = check_ops(current, count, 7, tonumber(ARGV[5]), bytes, tonumber(ARGV[6]))
if bad then return finish(bad) end
local before = ix_of_key(key)
local results = apply_ops(key, 7)
ver = redis.call('HINCRBY', key, '_ver', 1)
local exp = slide(key, set, handle, now, abs, tonumber(ARGV[2]), before, meta[3])
local reply = { 0, ver, exp, now, abs }
for _, r in ipairs(results) do reply[#reply + 1] = r end
return finish(reply)
