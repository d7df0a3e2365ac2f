-- First half of a login that crosses cluster slots: atomically reads and
-- deletes the old session (and its device-set entry), returning the user
-- fields carry() lets through to the new session as a flat
-- {field, value, ...} list: none from another user's session, none when it
-- was already dead. The caller then creates the new session with these
-- fields (create.lua).
-- Keys: s old session hash, d its device set (when bound).
-- ARGV[2] old handle, ARGV[3] user signing in, ARGV[4] carry policy
local now = now_ms()
local meta, fields = split_hash(redis.call('HGETALL', K.s))
bury(K.s, K.d, ARGV[2])
local abs = tonumber(meta._abs)
local out = {}
if abs and abs > now then
  for field, value in pairs((carry(meta, fields, ARGV[3], ARGV[4]))) do
    out[#out + 1] = field
    out[#out + 1] = value
  end
end
return finish(out)
