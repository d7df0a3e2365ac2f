-- A page of a global sorted set (a field index, or the seen index), after
-- pruning entries scored before now - horizon.
-- Keys: g the set.
-- ARGV[2] minimum score as ms before now ('' = now), ARGV[3] horizon ms,
-- ARGV[4] offset,
-- ARGV[5] count
-- Returns {now, total from the minimum on, {member, score, ...}}.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', K.g, '-inf', '(' .. (now - tonumber(ARGV[3])))
local min = tostring(now - (tonumber(ARGV[2]) or 0))
local total = redis.call('ZCOUNT', K.g, min, '+inf')
local page = redis.call('ZRANGEBYSCORE', K.g, min, '+inf', 'WITHSCORES',
  'LIMIT', ARGV[4], ARGV[5])
return { now, total, page }
