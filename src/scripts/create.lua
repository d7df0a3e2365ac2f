-- Creates a session (first write of a visitor, or a login without a session).
-- KEYS[1] new session hash, KEYS[2] device set (bound sessions only)
-- ARGV[1] idle ms, ARGV[2] absolute lifetime ms, ARGV[3] handle,
-- ARGV[4] user id ('' = none), ARGV[5] user agent ('' = none),
-- ARGV[6] max user fields, ARGV[7..] ops (op, field, value)
-- Returns as apply.lua. An existing key is never overwritten: see replay().
local key, set = KEYS[1], KEYS[2]
if redis.call('EXISTS', key) == 1 then
  return replay(key, 7)
end
local now = now_ms()
local function current(_) return nil end
local bad = check_ops(current, 0, 7, tonumber(ARGV[6]))
if bad then return bad end
return create(key, set, ARGV[3], now, tonumber(ARGV[1]), tonumber(ARGV[2]),
  ARGV[4], ARGV[5], {}, 7)
