-- Counts live sessions in the active index, pruning expired entries.
-- Keys: g the active index.
-- Returns {now, count}.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', K.g, '-inf', '(' .. now)
return { now, redis.call('ZCARD', K.g) }
