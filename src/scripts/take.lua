-- First half of a login that crosses cluster slots: atomically reads and
-- deletes the old session (and its device-set entry), returning its user
-- fields as a flat {field, value, ...} list ({} when it was already dead).
-- The caller then creates the new session with these fields (create.lua).
-- Keys: s old session hash, d its device set (when bound).
-- ARGV[2] old handle
local now = now_ms()
local flat = redis.call('HGETALL', K.s)
bury(K.s, K.d, ARGV[2])
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
return finish(out)
