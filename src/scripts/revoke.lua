-- Revokes sessions of one user: one of them, all but one, or all (logout-all).
-- 'others' and 'all' end at most ARGV[5] sessions per call, so that no call
-- holds Redis for long however many sessions the user has: the caller calls
-- again while the reply says more are left.
-- Keys: d the user's device set.
-- ARGV[2] key prefix of this user's sessions (same cluster slot as the set),
-- ARGV[3] mode: 'one' | 'others' | 'all', ARGV[4] handle (the one to revoke,
-- or the one to keep), ARGV[5] most sessions ended by this call
-- Returns {more, {handles of the sessions deleted}}: more is 1 when sessions
-- to revoke are left for another call, else 0.
local set, prefix, mode, handle = K.d, ARGV[2], ARGV[3], ARGV[4]
local most = tonumber(ARGV[5])
local gone = {}
local more = 0
local function revoke(h)
  if redis.call('EXISTS', prefix .. h) == 1 then
    gone[#gone + 1] = h
  end
  bury(prefix .. h, set, h)
end
if mode == 'one' then
  revoke(handle)
else
  -- `most` entries, one more that may be the one kept, and one more that
  -- tells whether any is left.
  local done = 0
  for _, h in ipairs(redis.call('ZRANGE', set, 0, most + 1)) do
    if mode == 'all' or h ~= handle then
      if done == most then
        more = 1
        break
      end
      done = done + 1
      revoke(h)
    end
  end
end
return finish({ more, gone })
