-- Rebuilds the global entries of one session (active and seen indexes, every
-- declared field index) from what it holds now: for indexes declared after
-- sessions existed. Safe to repeat.
-- Keys: s session hash.
-- ARGV[2] idle ms
-- Returns finish(1) when indexed, finish(0) when the key is not a live
-- session with a TTL (audit reports those).
local key = K.s
local now = now_ms()
if redis.call('TYPE', key).ok ~= 'hash' then return finish(0) end
local m = redis.call('HMGET', key, '_abs', '_seen')
local abs = tonumber(m[1])
local ttl = redis.call('PTTL', key)
if not abs or abs <= now or ttl <= 0 then return finish(0) end
local exp = now + ttl
local sid = sid_of(key)
gop('Z', 'active', sid, exp)
gop('S', 'seen', sid, tonumber(m[2]) or now, tonumber(ARGV[2]))
ix_sync(sid, {}, ix_of_key(key), exp)
return finish(1)
