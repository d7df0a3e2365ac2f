-- Live sessions per value of an indexed field.
-- Keys: g the field's value registry.
-- ARGV[2] field, ARGV[3] top N, ARGV[4] most values examined
-- Returns {now, distinct values, {value, count, ...}}.
local now = now_ms()
local r = ix_counts(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now)
return { now, r[1], r[2] }
