-- Revokes sessions of one user: one of them, all but one, or all (logout-all).
-- KEYS[1] device set
-- ARGV[1] key prefix of this user's sessions (same cluster slot as the set),
-- ARGV[2] mode: 'one' | 'others' | 'all', ARGV[3] handle (the one to revoke,
-- or the one to keep)
-- Returns the number of sessions deleted.
local set, prefix, mode, handle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if mode == 'one' then
  local n = redis.call('DEL', prefix .. handle)
  redis.call('ZREM', set, handle)
  return n
end
local n = 0
for _, h in ipairs(redis.call('ZRANGE', set, 0, -1)) do
  if mode == 'all' or h ~= handle then
    n = n + redis.call('DEL', prefix .. h)
    redis.call('ZREM', set, h)
  end
end
return n
