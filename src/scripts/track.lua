-- Redis Cluster only: keeps the active index (its own slot) in step with a
-- session operation that runs in another slot, usually in the same pipeline.
-- Idempotent, and self-healing: an entry lives at most until the expiry it
-- was given.
-- Keys: a active index.
-- ARGV[2..] triples (op, handle, ttl ms):
--   S set the entry to now + ttl; T the same, only if the entry exists;
--   D delete the entry (ttl ignored).
local now = now_ms()
for i = 2, #ARGV, 3 do
  local op, handle, ttl = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if op == 'D' then
    redis.call('ZREM', K.a, handle)
  elseif op == 'S' or redis.call('ZSCORE', K.a, handle) then
    index_touch(K.a, handle, now + ttl, now)
  end
end
return 1
