-- Logout: deletes a session and its device-set entry.
-- KEYS[1] session hash, KEYS[2] device set (bound sessions only)
-- ARGV[1] handle
-- Returns 1 if the session existed, else 0.
local existed = redis.call('EXISTS', KEYS[1])
bury(KEYS[1], KEYS[2], ARGV[1])
return existed
