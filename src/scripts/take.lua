-- First half of a login that crosses cluster slots: atomically reads and
-- deletes the old session (and its index entry), returning its user fields
-- as a flat {field, value, ...} list ({} when it was already dead). The
-- caller then creates the new session with these fields (create.lua).
-- KEYS[1] old session hash, KEYS[2] old device set (when bound)
-- ARGV[1] old handle
local now = now_ms()
local flat = redis.call('HGETALL', KEYS[1])
bury(KEYS[1], KEYS[2], ARGV[1])
local abs
for i = 1, #flat, 2 do
  if flat[i] == '_abs' then abs = tonumber(flat[i + 1]) end
end
local out = {}
if abs and abs > now then
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 1) ~= '_' then
      out[#out + 1] = flat[i]
      out[#out + 1] = flat[i + 1]
    end
  end
end
return out
