-- Login with session regeneration (fixation defence), in one atomic step:
-- the old session's user data moves to a new session under a new token,
-- bound to the user; the old session and its index entry are deleted.
-- KEYS[1] new session hash, KEYS[2] new device set,
-- KEYS[3] old session hash, KEYS[4] old device set (when the old one was bound)
-- ARGV[1] idle ms, ARGV[2] absolute lifetime ms, ARGV[3] new handle,
-- ARGV[4] user id, ARGV[5] user agent, ARGV[6] max user fields,
-- ARGV[7] old handle, ARGV[8..] ops (op, field, value)
-- Returns as create.lua.
local key, set, old_key, old_set = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', key) == 1 then
  return replay(key, 8)
end
local now = now_ms()
local flat = redis.call('HGETALL', old_key)
local abs
for i = 1, #flat, 2 do
  if flat[i] == '_abs' then abs = tonumber(flat[i + 1]) end
end
local carried, count = {}, 0
if abs and abs > now then
  carried, count = user_fields(flat)
end
local function current(field) return carried[field] end
local bad = check_ops(current, count, 8, tonumber(ARGV[6]))
if bad then return bad end
bury(old_key, old_set, ARGV[7])
return create(key, set, ARGV[3], now, tonumber(ARGV[1]), tonumber(ARGV[2]),
  ARGV[4], ARGV[5], carried, 8)
