-- Logout: deletes a session and its index entries.
-- Keys: s session hash, d device set (bound sessions).
-- ARGV[2] handle
-- Returns 1 if the session existed, else 0.
local existed = redis.call('EXISTS', K.s)
bury(K.s, K.d, ARGV[2])
return finish(existed)
