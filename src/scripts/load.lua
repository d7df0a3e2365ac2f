-- Load and slide: one round trip for a signed-in request.
-- KEYS[1] session hash, KEYS[2] device set (bound sessions only)
-- ARGV[1] idle ms, ARGV[2] touch interval ms, ARGV[3] handle
-- Returns nil when the session is gone, else {now, expiry, {field, value, ...}}.
local key, set, handle = KEYS[1], KEYS[2], ARGV[3]
local now = now_ms()
local flat = redis.call('HGETALL', key)
local abs, seen
for i = 1, #flat, 2 do
  if flat[i] == '_abs' then abs = tonumber(flat[i + 1])
  elseif flat[i] == '_seen' then seen = tonumber(flat[i + 1]) end
end
if not abs or abs <= now then
  bury(key, set, handle)
  return false
end
local exp
local ttl = redis.call('PTTL', key)
if ttl < 0 or not seen or now - seen >= tonumber(ARGV[2]) then
  exp = slide(key, set, handle, now, abs, tonumber(ARGV[1]))
  for i = 1, #flat, 2 do
    if flat[i] == '_seen' then flat[i + 1] = tostring(now) end
  end
else
  exp = now + ttl
end
return { now, exp, flat }
