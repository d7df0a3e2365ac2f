-- Creates a session (first write of a visitor, or a login without a session),
-- ending the user's sessions past the cap (cap_sessions).
-- Keys: s new session hash, d device set (bound sessions).
-- ARGV[2] idle ms, ARGV[3] absolute lifetime ms, ARGV[4] handle,
-- ARGV[5] user id ('' = none), ARGV[6] user agent ('' = none),
-- ARGV[7] max user fields, ARGV[8] max session bytes, ARGV[9] subnet binding
-- hash, ARGV[10] user-agent binding hash ('' = not bound), ARGV[11] most
-- sessions per user (0 = no cap), ARGV[12] most sessions the cap ends in one
-- call, ARGV[13..] ops (op, field, value)
-- Returns {0, version, expiry, now, absolute, increments..., {handles the cap
-- ended}}, or an error status as apply.lua. An existing key is never
-- overwritten: see replay().
local key, set = K.s, K.d
if redis.call('EXISTS', key) == 1 then
  return finish(replay(key, 13))
end
local now = now_ms()
local bad, state, incs = check_ops({}, 0, 13, tonumber(ARGV[7]), 0, tonumber(ARGV[8]))
if bad then return finish(bad) end
return finish(create(key, set, ARGV[4], now, tonumber(ARGV[2]), tonumber(ARGV[3]),
  ARGV[5], ARGV[6], { ARGV[9], ARGV[10] }, {}, state, incs,
  { tonumber(ARGV[11]), tonumber(ARGV[12]) }))
