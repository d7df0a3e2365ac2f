-- edge-session: functions shared by every script (prepended to each one).
--
-- Session hash fields starting with "_" are metadata:
--   _created, _seen, _abs (absolute expiry), all in ms since the epoch,
--   _ver (data version), _user (bound user id), _ua (user agent).
-- Every other field is user data: one JSON text per field.
-- Time always comes from the Redis server (TIME), never from the caller, so
-- instances with skewed clocks agree.

local META = { '_created', '_seen', '_abs', '_ver', '_user', '_ua' }

-- Keys by role. ARGV[1] names the role of each key, one letter per key:
--   s session hash, d its user's device set, o old session hash (login),
--   p old session's device set (login), a the active-sessions index.
-- A role that is absent has no key (e.g. no device set for an anonymous
-- session, no active index on Redis Cluster, where it lives in another slot).
local K = {}
for i = 1, #ARGV[1] do
  K[string.sub(ARGV[1], i, i)] = KEYS[i]
end
local MAX_SAFE = 9007199254740991

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Records `handle` with expiry `exp` in a sorted set of sessions (a user's
-- device set or the active index), drops members that expired before `now`,
-- and keeps the set's own TTL at its last member's, so the set never outlives
-- the sessions it lists.
local function index_touch(set, handle, exp, now)
  redis.call('ZADD', set, exp, handle)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. now)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', set, last[2])
  end
end

-- Deletes a session that is gone or past its absolute expiry, and its index entry.
local function bury(key, set, handle)
  redis.call('DEL', key)
  if set then
    redis.call('ZREM', set, handle)
  end
  if K.a then
    redis.call('ZREM', K.a, handle)
  end
end

-- Pushes the idle expiry forward, never past the absolute one. Writes only
-- metadata (_seen) and TTLs: a touch never rewrites user data.
-- Sets a session's expiry to the idle one (never past `abs`) and records it
-- in its device set and the active index. Returns the expiry.
local function expire(key, set, handle, now, abs, idle)
  local exp = math.min(now + idle, abs)
  redis.call('PEXPIREAT', key, exp)
  if set then
    index_touch(set, handle, exp, now)
  end
  if K.a then
    index_touch(K.a, handle, exp, now)
  end
  return exp
end

local function slide(key, set, handle, now, abs, idle)
  redis.call('HSET', key, '_seen', now)
  return expire(key, set, handle, now, abs, idle)
end

-- Checks a list of ops (ARGV[first..] as op, field, value triples; op is
-- S = set JSON text, D = delete, I = increment by an integer) against the
-- current fields, without writing anything. `current(field)` returns a
-- field's value or nil; `count` is the number of user fields now.
-- Returns nil when the ops may run, or an error reply table.
local function check_ops(current, count, first, max_fields)
  local state = {}
  for i = first, #ARGV, 3 do
    local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if state[field] == nil then
      local v = current(field)
      state[field] = v or false
    end
    local before = state[field]
    if op == 'D' then
      if before then count = count - 1 end
      state[field] = false
    else
      if not before then count = count + 1 end
      if op == 'S' then
        state[field] = value
      else
        local base = 0
        if before then
          if not string.match(before, '^%-?%d+$') then return { 3, field } end
          base = tonumber(before)
        end
        local n = base + tonumber(value)
        if n > MAX_SAFE or n < -MAX_SAFE then return { 3, field } end
        state[field] = tostring(n)
      end
    end
  end
  if count > max_fields then return { 4, count } end
  return nil
end

-- Runs checked ops; returns the new values of the increments, in order.
local function apply_ops(key, first)
  local results = {}
  for i = first, #ARGV, 3 do
    local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if op == 'S' then
      redis.call('HSET', key, field, value)
    elseif op == 'D' then
      redis.call('HDEL', key, field)
    else
      results[#results + 1] = redis.call('HINCRBY', key, field, value)
    end
  end
  return results
end

-- Number of user (non-metadata) fields in a hash.
local function user_field_count(key)
  local present = redis.call('HMGET', key, unpack(META))
  local meta = 0
  for i = 1, #META do
    if present[i] then meta = meta + 1 end
  end
  return redis.call('HLEN', key) - meta
end

-- Splits a flat HGETALL reply into a table of user fields and its size.
local function user_fields(flat)
  local fields, count = {}, 0
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 1) ~= '_' then
      fields[flat[i]] = flat[i + 1]
      count = count + 1
    end
  end
  return fields, count
end

-- Creates a session hash holding `carried` user fields (a table) plus the ops
-- from ARGV[first..], which must have been checked. Returns the reply table
-- {0, version, expiry, now, absolute, increments...}.
local function create(key, set, handle, now, idle, absolute, user, ua, carried, first)
  local abs = now + absolute
  redis.call('HSET', key, '_created', now, '_seen', now, '_abs', abs, '_ver', 1)
  if user ~= '' then redis.call('HSET', key, '_user', user) end
  if ua ~= '' then redis.call('HSET', key, '_ua', ua) end
  for field, value in pairs(carried) do
    redis.call('HSET', key, field, value)
  end
  local results = apply_ops(key, first)
  local exp = expire(key, set, handle, now, abs, idle)
  local reply = { 0, 1, exp, now, abs }
  for _, r in ipairs(results) do reply[#reply + 1] = r end
  return reply
end

-- The reply of a create or login whose new key already exists. Tokens are
-- 256 random bits, so that can only be this very call arriving a second time
-- (a retry after a lost response): answer as the first time did, without
-- writing anything, which makes create and login safe to retry.
local function replay(key, first)
  local now = now_ms()
  local m = redis.call('HMGET', key, '_ver', '_abs')
  local ttl = math.max(redis.call('PTTL', key), 0)
  local reply = { 0, tonumber(m[1]) or 1, now + ttl, now, tonumber(m[2]) or now }
  for i = first, #ARGV, 3 do
    if ARGV[i] == 'I' then
      reply[#reply + 1] = tonumber(redis.call('HGET', key, ARGV[i + 1])) or 0
    end
  end
  return reply
end
