-- Counts live sessions in the active index, pruning expired entries.
-- Keys: a active index.
-- Returns {now, count}.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', K.a, '-inf', '(' .. now)
return { now, redis.call('ZCARD', K.a) }
