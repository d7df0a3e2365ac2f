-- Load and slide: one round trip for a signed-in request.
-- Keys: s session hash, d device set (bound sessions).
-- ARGV[2] idle ms, ARGV[3] touch interval ms, ARGV[4] handle
-- Returns nil when the session is gone, else {now, expiry, {field, value, ...}}.
local key, set, handle = K.s, K.d, ARGV[4]
local now = now_ms()
local flat = redis.call('HGETALL', key)
local meta, fields = split_hash(flat)
local abs = tonumber(meta._abs)
if not abs or abs <= now then
  bury(key, set, handle)
  return finish(false)
end
local exp
local ttl = redis.call('PTTL', key)
if slide_due(ttl, tonumber(meta._seen), now, tonumber(ARGV[3])) then
  exp = slide(key, set, handle, now, abs, tonumber(ARGV[2]), nil, meta._user,
    ix_entries(fields))
  for i = 1, #flat, 2 do
    if flat[i] == '_seen' then flat[i + 1] = tostring(now) end
  end
else
  exp = now + ttl
end
return finish({ now, exp, flat })
