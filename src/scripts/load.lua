-- Load and slide, for a read whose HGETALL found a slide due, or a session
-- written before _exp existed (the slide writes it: see SessionStore::load).
-- Keys: s session hash, d device set (bound sessions).
-- ARGV[2] idle ms, ARGV[3] touch interval ms, ARGV[4] handle
-- Returns nil when the session is gone, else {now, expiry, {field, value, ...}}.
local key, set, handle = K.s, K.d, ARGV[4]
local now = now_ms()
local flat = redis.call('HGETALL', key)
-- Only the metadata a read needs: no tables on the hot path (a read that
-- does not slide is most reads).
local abs, seen, user, has_exp
for i = 1, #flat, 2 do
  local name = flat[i]
  if name == '_abs' then abs = tonumber(flat[i + 1])
  elseif name == '_seen' then seen = tonumber(flat[i + 1])
  elseif name == '_user' then user = flat[i + 1]
  elseif name == '_exp' then has_exp = true end
end
if not abs or abs <= now then
  bury(key, set, handle)
  return finish(false)
end
local exp
local ttl = redis.call('PTTL', key)
if not has_exp or slide_due(ttl, seen, now, tonumber(ARGV[3])) then
  local entries = {}
  if #IX > 0 then
    local _, fields = split_hash(flat)
    entries = ix_entries(fields)
  end
  exp = slide(key, set, handle, now, abs, tonumber(ARGV[2]), nil, user, entries)
  for i = 1, #flat, 2 do
    if flat[i] == '_seen' then flat[i + 1] = tostring(now) end
  end
else
  exp = now + ttl
end
return finish({ now, exp, flat })
