-- Every analytics figure in one step.
-- Keys: g the active index.
-- ARGV[2] days of daily figures, ARGV[3] top N per scalar index,
-- ARGV[4] most values examined per index, ARGV[5] the "seen within" window ms
-- Returns {now, active, seen since, {day, created, logins, users, ...},
--          {field, distinct, {value, count, ...}, ...}}.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', K.g, '-inf', '(' .. now)
local active = redis.call('ZCARD', K.g)
local seen = redis.call('ZCOUNT', gkey('seen'), now - tonumber(ARGV[5]), '+inf')
local days = {}
local today = math.floor(now / 86400000)
for d = 0, tonumber(ARGV[2]) - 1 do
  local day = tostring(today - d)
  days[#days + 1] = today - d
  days[#days + 1] = tonumber(redis.call('GET', gkey('st:created:' .. day))) or 0
  days[#days + 1] = tonumber(redis.call('GET', gkey('st:logins:' .. day))) or 0
  days[#days + 1] = redis.call('PFCOUNT', gkey('st:users:' .. day))
end
local fields = {}
for _, ix in ipairs(IX) do
  if not ix.array then
    local r = ix_counts(ix.field, tonumber(ARGV[3]), tonumber(ARGV[4]), now)
    fields[#fields + 1] = ix.field
    fields[#fields + 1] = r[1]
    fields[#fields + 1] = r[2]
  end
end
return { now, active, seen, days, fields }
