-- Login with session regeneration (fixation defence), in one atomic step:
-- a new session under a new token, bound to the user, takes the old
-- session's user data that carry() lets through (none from another user's
-- session; SESSION_LOGIN_CARRY); the old session and its index entries are
-- deleted, and the user's sessions past the cap ended (cap_sessions).
-- Keys: s new session hash, d new device set, o old session hash,
-- p old device set (when the old session was bound).
-- ARGV[2] idle ms, ARGV[3] absolute lifetime ms, ARGV[4] new handle,
-- ARGV[5] user id, ARGV[6] user agent, ARGV[7] max user fields,
-- ARGV[8] max session bytes, ARGV[9] subnet binding hash, ARGV[10] user-agent
-- binding hash ('' = not bound), ARGV[11] most sessions per user (0 = no
-- cap), ARGV[12] most sessions the cap ends in one call, ARGV[13] old handle,
-- ARGV[14] carry policy (see carry()), ARGV[15..] ops (op, field, value)
-- Returns as create.lua.
local key, set = K.s, K.d
if redis.call('EXISTS', key) == 1 then
  return finish(replay(key, 15))
end
local now = now_ms()
local meta, fields = split_hash(redis.call('HGETALL', K.o))
local carried, count, bytes = {}, 0, 0
local abs = tonumber(meta._abs)
if abs and abs > now then
  carried, count, bytes = carry(meta, fields, ARGV[5], ARGV[14])
end
local bad, state, incs = check_ops(carried, count, 15, tonumber(ARGV[7]), bytes, tonumber(ARGV[8]))
if bad then return finish(bad) end
bury(K.o, K.p, ARGV[13])
return finish(create(key, set, ARGV[4], now, tonumber(ARGV[2]), tonumber(ARGV[3]),
  ARGV[5], ARGV[6], { ARGV[9], ARGV[10] }, carried, state, incs,
  { tonumber(ARGV[11]), tonumber(ARGV[12]) }))
