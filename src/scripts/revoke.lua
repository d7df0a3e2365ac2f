-- Revokes sessions of one user: one of them, all but one, or all (logout-all).
-- Keys: d the user's device set.
-- ARGV[2] key prefix of this user's sessions (same cluster slot as the set),
-- ARGV[3] mode: 'one' | 'others' | 'all', ARGV[4] handle (the one to revoke,
-- or the one to keep)
-- Returns the handles of the sessions deleted.
local set, prefix, mode, handle = K.d, ARGV[2], ARGV[3], ARGV[4]
local gone = {}
local function revoke(h)
  if redis.call('EXISTS', prefix .. h) == 1 then
    gone[#gone + 1] = h
  end
  bury(prefix .. h, set, h)
end
if mode == 'one' then
  revoke(handle)
else
  for _, h in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    if mode == 'all' or h ~= handle then
      revoke(h)
    end
  end
end
return finish(gone)
