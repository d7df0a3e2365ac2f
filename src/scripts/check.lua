-- Checks that a session found in a global index is alive and, for a field
-- index, still holds the value: queries never return a dead or stale entry.
-- Keys: s session hash.
-- ARGV[2] field ('' = no field check), ARGV[3] '1' for an array index,
-- ARGV[4] value
-- Returns {1, user, created, seen, expiry, absolute} or {0}.
local key = K.s
local now = now_ms()
local m = redis.call('HMGET', key, '_abs', '_user', '_created', '_seen')
local abs = tonumber(m[1])
local ttl = redis.call('PTTL', key)
-- A session without a TTL (damaged; the audit repairs it) still counts.
if not abs or abs <= now or ttl == -2 then
  return { 0 }
end
if ARGV[2] ~= '' then
  local found = false
  for _, v in ipairs(ix_values(redis.call('HGET', key, ARGV[2]) or nil, ARGV[3] == '1')) do
    if v == ARGV[4] then found = true end
  end
  if not found then return { 0 } end
end
local exp = abs
if ttl > 0 then exp = now + ttl end
return { 1, m[2] or '', tonumber(m[3]) or 0, tonumber(m[4]) or 0, exp, abs }
