-- Lists a user's live sessions, pruning dead entries as it goes.
-- Keys: d the user's device set.
-- ARGV[2] key prefix of this user's sessions (they share the set's hash tag,
-- so they live in the same cluster slot), ARGV[3] maximum entries
-- Returns {now, {{handle, created, seen, expiry, absolute, user agent, user}, ...}}
local set, prefix = K.d, ARGV[2]
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. now)
local handles = redis.call('ZRANGE', set, 0, tonumber(ARGV[3]) - 1)
local out = {}
for _, h in ipairs(handles) do
  local key = prefix .. h
  local m = redis.call('HMGET', key, '_created', '_seen', '_abs', '_ua', '_user')
  local ttl = redis.call('PTTL', key)
  if m[3] and tonumber(m[3]) > now and ttl > 0 then
    out[#out + 1] = { h, m[1] or '0', m[2] or '0', now + ttl, m[3], m[4] or '', m[5] or '' }
  else
    bury(key, set, h)
  end
end
return finish({ now, out })
