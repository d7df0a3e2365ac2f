-- Load and slide: one round trip for a signed-in request.
-- Keys: s session hash, d device set (bound sessions).
-- ARGV[2] idle ms, ARGV[3] touch interval ms, ARGV[4] handle
-- Returns nil when the session is gone, else {now, expiry, {field, value, ...}}.
local key, set, handle = K.s, K.d, ARGV[4]
local now = now_ms()
local flat = redis.call('HGETALL', key)
local abs, seen, user
for i = 1, #flat, 2 do
  if flat[i] == '_abs' then abs = tonumber(flat[i + 1])
  elseif flat[i] == '_seen' then seen = tonumber(flat[i + 1])
  elseif flat[i] == '_user' then user = flat[i + 1] end
end
if not abs or abs <= now then
  bury(key, set, handle)
  return finish(false)
end
local exp
local ttl = redis.call('PTTL', key)
if ttl < 0 or not seen or now - seen >= tonumber(ARGV[3]) then
  exp = slide(key, set, handle, now, abs, tonumber(ARGV[2]), nil, user)
  for i = 1, #flat, 2 do
    if flat[i] == '_seen' then flat[i + 1] = tostring(now) end
  end
else
  exp = now + ttl
end
return finish({ now, exp, flat })
