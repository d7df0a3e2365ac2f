-- First half of a login that crosses cluster slots: atomically reads and
-- deletes the old session (and its device-set entry), returning its user
-- fields as a flat {field, value, ...} list ({} when it was already dead).
-- The caller then creates the new session with these fields (create.lua).
-- Keys: s old session hash, d its device set (when bound).
-- ARGV[2] old handle
local now = now_ms()
local meta, fields = split_hash(redis.call('HGETALL', K.s))
bury(K.s, K.d, ARGV[2])
local abs = tonumber(meta._abs)
local out = {}
if abs and abs > now then
  for field, value in pairs(fields) do
    out[#out + 1] = field
    out[#out + 1] = value
  end
end
return finish(out)
