-- Sizes one session hash, for the audit.
-- Keys: s session hash.
-- Returns {user fields, bytes of user data, largest field bytes, absolute
-- expiry or -1, PTTL}.
local flat = redis.call('HGETALL', K.s)
local fields, bytes, largest = 0, 0, 0
local abs = -1
for i = 1, #flat, 2 do
  if flat[i] == '_abs' then abs = tonumber(flat[i + 1]) or -1 end
  if string.sub(flat[i], 1, 1) ~= '_' then
    local n = #flat[i] + #flat[i + 1]
    fields = fields + 1
    bytes = bytes + n
    if n > largest then largest = n end
  end
end
return { fields, bytes, largest, abs, redis.call('PTTL', K.s) }
