-- edge-session: the library of every script. Its top-level statements are
-- prepended to each script, with the functions the script uses (src/script.rs).
--
-- Session hash fields starting with "_" are metadata:
--   _created, _seen (the last slide), _abs (absolute expiry), _exp (the
--   key's expiry, written with every TTL the scripts set, so a plain HGETALL
--   tells a reader everything: see SessionStore::load), all in ms since the
--   epoch,
--   _ver (data version), _user (bound user id), _ua (user agent),
--   _bnet, _bua (binding hashes of the client's network and user agent).
-- Every other field is user data: one JSON text per field.
-- Scripts take time from the Redis server (TIME), never from the caller, so
-- instances with skewed clocks agree on every write. A plain read (HGETALL,
-- no script) judges _abs, _exp and _seen by the reader's own clock.

-- ARGV[1] is the context, five lines:
--   1. the role of each key, one letter per key: s session hash, d its
--      user's device set, o old session hash (login), p old session's device
--      set (login), g a global key (index or statistics, cluster follow-ups);
--   2. the key prefix (e.g. "es:");
--   3. "c" on Redis Cluster, else "n";
--   4. the declared indexes, e.g. "tenant,cart[]" ("[]": index each element
--      of a JSON array);
--   5. how many days daily statistics are kept.
-- A role that is absent has no key (e.g. no device set for an anonymous
-- session).
local ROLES, PREFIX, MODE, IXS, DAYS =
  string.match(ARGV[1], '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)$')
if not ROLES then
  return redis.error_reply('edge-session: malformed script context')
end
local K = {}
for i = 1, #ROLES do
  K[string.sub(ROLES, i, i)] = KEYS[i]
end
local CLUSTER = MODE == 'c'
local IX = {}
if IXS ~= '' then
  for item in string.gmatch(IXS, '[^,]+') do
    if string.sub(item, -2) == '[]' then
      IX[#IX + 1] = { field = string.sub(item, 1, -3), array = true }
    else
      IX[#IX + 1] = { field = item, array = false }
    end
  end
end
local STAT_TTL = (tonumber(DAYS) or 30) * 86400000 + 86400000
-- Index values longer than this, and array elements past this count, are
-- not indexed (bounded work per write).
local MAX_IX_VALUE = 256
local MAX_IX_ELEMENTS = 64
local MAX_SAFE = 9007199254740991

local NOW
local function now_ms()
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end

-- Records `member` with `score` in the sorted set `set`, drops members scored
-- before `now - horizon`, and keeps the set's own TTL at its last member's
-- score + `horizon`, so the set never outlives what it lists.
local function zput(set, member, score, now, horizon)
  redis.call('ZADD', set, score, member)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. (now - horizon))
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', set, tonumber(last[2]) + horizon)
  end
end

-- Global keys (the active and seen indexes, field indexes, statistics) share
-- the hash tag {g}, so on Redis Cluster they live in one slot apart from the
-- sessions. Operations on them are (op, name, member, score, extra):
--   Z  member scored by its expiry (score), pruned when expired;
--   S  member scored by last use (score), pruned `extra` ms later;
--   V  value registry: member's score raised to `score` (never lowered);
--   R  member removed;
--   C  counter incremented, kept `extra` ms;
--   H  member added to a HyperLogLog, kept `extra` ms.
-- On a single Redis they run at once, in the same atomic script. On Redis
-- Cluster they are returned to the caller (see finish()), which runs them in
-- the global slot with track.lua right after.
local function gkey(name)
  return PREFIX .. '{g}:' .. name
end

local function gexec(op, name, member, score, extra, now)
  local key = gkey(name)
  if op == 'Z' then
    zput(key, member, score, now, 0)
  elseif op == 'S' then
    zput(key, member, score, now, extra)
  elseif op == 'V' then
    redis.call('ZADD', key, 'GT', score, member)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    if last[2] then redis.call('PEXPIREAT', key, last[2]) end
  elseif op == 'R' then
    redis.call('ZREM', key, member)
    -- The last session of a value gone: the value leaves its registry.
    local field, value = string.match(name, '^ix:([^:]*):(.*)$')
    if field and redis.call('EXISTS', key) == 0 then
      redis.call('ZREM', gkey('iv:' .. field), value)
    end
  elseif op == 'C' then
    redis.call('INCR', key)
    redis.call('PEXPIRE', key, extra)
  elseif op == 'H' then
    redis.call('PFADD', key, member)
    redis.call('PEXPIRE', key, extra)
  end
end

local G = {}
local function gop(op, name, member, score, extra)
  if CLUSTER then
    local n = #G
    G[n + 1], G[n + 2], G[n + 3] = op, name, member
    G[n + 4], G[n + 5] = tostring(score or 0), tostring(extra or 0)
  else
    gexec(op, name, member, tonumber(score) or 0, tonumber(extra) or 0, now_ms())
  end
end

-- A script's reply: as is on a single Redis; on Redis Cluster paired with
-- the global operations the caller must run next.
local function finish(reply)
  if CLUSTER then
    return { reply, G }
  end
  return reply
end

-- The session's id in global indexes: its key without the prefix and "s:".
local function sid_of(key)
  return string.sub(key, #PREFIX + 3)
end

local function day_of(now)
  return tostring(math.floor(now / 86400000))
end

-- The index values of one field's JSON text: the text of a JSON string, the
-- JSON text of a number or boolean; for an array index, each element's.
local function ix_values(text, array)
  local out = {}
  if not text then return out end
  local ok, v = pcall(cjson.decode, text)
  if not ok then return out end
  local function add(x)
    local t, s = type(x), nil
    if t == 'string' then
      s = x
    elseif t == 'number' or t == 'boolean' then
      s = cjson.encode(x)
    end
    if s and #s <= MAX_IX_VALUE then out[#out + 1] = s end
  end
  if array then
    if type(v) == 'table' then
      for i = 1, math.min(#v, MAX_IX_ELEMENTS) do add(v[i]) end
    end
  else
    add(v)
  end
  return out
end

-- The index entries of a session as a set of "field\nvalue" strings;
-- `fields` holds the session's JSON texts by field name (at least the
-- indexed ones).
local function ix_entries(fields)
  local set = {}
  for _, ix in ipairs(IX) do
    for _, v in ipairs(ix_values(fields[ix.field], ix.array)) do
      set[ix.field .. '\n' .. v] = true
    end
  end
  return set
end

-- The index entries of the session stored at `key`.
local function ix_of_key(key)
  if #IX == 0 then return {} end
  local names = {}
  for i, ix in ipairs(IX) do names[i] = ix.field end
  local values = redis.call('HMGET', key, unpack(names))
  local by = {}
  for i, ix in ipairs(IX) do
    if values[i] then by[ix.field] = values[i] end
  end
  return ix_entries(by)
end

-- Moves a session's index entries from `before` to `after` (sets of
-- entries), scoring the ones in `after` with the session's expiry `exp`.
local function ix_sync(sid, before, after, exp)
  for e in pairs(before) do
    if not after[e] then
      local f, v = string.match(e, '^([^\n]*)\n(.*)$')
      gop('R', 'ix:' .. f .. ':' .. v, sid)
    end
  end
  for e in pairs(after) do
    local f, v = string.match(e, '^([^\n]*)\n(.*)$')
    gop('Z', 'ix:' .. f .. ':' .. v, sid, exp)
    gop('V', 'iv:' .. f, v, exp)
  end
end

-- Records `handle` with expiry `exp` in a user's device set (pruned, and
-- never outliving its sessions).
local function index_touch(set, handle, exp, now)
  zput(set, handle, exp, now, 0)
end

-- Deletes a session that is gone or past its absolute expiry, and every
-- index entry it has.
local function bury(key, set, handle)
  local sid = sid_of(key)
  ix_sync(sid, ix_of_key(key), {}, 0)
  redis.call('DEL', key)
  if set then
    redis.call('ZREM', set, handle)
  end
  gop('R', 'active', sid)
  gop('R', 'seen', sid)
end

-- Sets a session's expiry to the idle one (never past `abs`), records it in
-- its device set, the active and seen indexes, and moves its field index
-- entries from `before` to `after` (what the session holds now; read from
-- the hash when nil). The expiry is also written to _exp (with _seen = now
-- when `stamp` is 'seen'; not at all when it is 'written': the caller wrote
-- both already), so the hash always tells its own expiry. Returns the expiry.
local function expire(key, set, handle, now, abs, idle, before, after, stamp)
  local exp = math.min(now + idle, abs)
  if stamp == 'seen' then
    redis.call('HSET', key, '_seen', now, '_exp', exp)
  elseif stamp ~= 'written' then
    redis.call('HSET', key, '_exp', exp)
  end
  redis.call('PEXPIREAT', key, exp)
  if set then
    index_touch(set, handle, exp, now)
  end
  local sid = sid_of(key)
  gop('Z', 'active', sid, exp)
  gop('S', 'seen', sid, now, idle)
  ix_sync(sid, before or {}, after or ix_of_key(key), exp)
  return exp
end

-- Pushes the idle expiry forward, never past the absolute one. Writes only
-- metadata (_seen, _exp) and TTLs: a touch never rewrites user data. A bound
-- session counts its user as active today.
local function slide(key, set, handle, now, abs, idle, before, user, after)
  if user and user ~= '' then
    gop('H', 'st:users:' .. day_of(now), user, 0, STAT_TTL)
  end
  return expire(key, set, handle, now, abs, idle, before, after, 'seen')
end

-- Whether a touch at `now` slides the expiry: a slide (with its index
-- upkeep) runs at most once per touch interval, since the last one recorded
-- in _seen. In between the expiry does not move, so every index score set by
-- the last slide is still exact. `ttl` is the key's PTTL.
local function slide_due(ttl, seen, now, interval)
  return ttl < 0 or not seen or now - seen >= interval
end

-- Splits a flat HGETALL reply into its metadata (a table by name), its user
-- fields (a table), their number and their size (names plus values).
local function split_hash(flat)
  local meta, fields, count, bytes = {}, {}, 0, 0
  for i = 1, #flat, 2 do
    local name, value = flat[i], flat[i + 1]
    if string.sub(name, 1, 1) == '_' then
      meta[name] = value
    else
      fields[name] = value
      count = count + 1
      bytes = bytes + #name + #value
    end
  end
  return meta, fields, count, bytes
end

-- Checks a list of ops (ARGV[first..] as op, field, value triples; op is
-- S = set JSON text, D = delete, I = increment by an integer) against the
-- current fields, without writing anything, and works out their outcome
-- (the script is atomic, so what it read is what the ops apply to).
-- `current` holds the current values by field name (a table); `count` is the
-- number of user fields now and `bytes` their size (names plus stored values).
-- Returns an error reply table when the ops may not run: {3, field} for an
-- increment of a non-integer or past 2^53, {4, count} past `max_fields`,
-- {5, bytes} when the session would grow past `max_bytes`. Else nil, the final
-- value of every field the ops touch (false: deleted) and the new values of
-- the increments, in order.
local function check_ops(current, count, first, max_fields, bytes, max_bytes)
  local state, before_size, incs = {}, {}, {}
  for i = first, #ARGV, 3 do
    local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if state[field] == nil then
      local v = current[field]
      state[field] = v or false
      before_size[field] = v and #field + #v or 0
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
        state[field] = string.format('%d', n)
        incs[#incs + 1] = n
      end
    end
  end
  if count > max_fields then return { 4, count } end
  local after = bytes
  for field, was in pairs(before_size) do
    local now = state[field]
    after = after + (now and #field + #now or 0) - was
  end
  if after > max_bytes and after > bytes then return { 5, after } end
  return nil, state, incs
end

-- Runs `cmd key items...` in as few calls as Lua's unpack allows.
local function call_many(cmd, key, items)
  for i = 1, #items, 2000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 1999, #items)))
  end
end

-- Writes the outcome of checked ops (`state` from check_ops) with one HSET
-- and one HDEL at most; `sets` holds more field, value pairs for the same
-- HSET (metadata), before the ops' own.
local function write_ops(key, state, sets)
  local dels = {}
  for field, value in pairs(state) do
    if value then
      sets[#sets + 1] = field
      sets[#sets + 1] = value
    else
      dels[#dels + 1] = field
    end
  end
  call_many('HDEL', key, dels)
  call_many('HSET', key, sets)
end

-- The user fields a login carries from the session it replaces (`meta` and
-- `fields` as split_hash gives them) into the new session of `user`: none
-- when that session belongs to another user, else the ones `policy` keeps:
-- 'all', 'none', or 'list' followed by one field name per line
-- (SESSION_LOGIN_CARRY). Returns them (a table), their number and their size
-- (names plus values).
local function carry(meta, fields, user, policy)
  local out, count, bytes = {}, 0, 0
  if (meta._user and meta._user ~= user) or policy == 'none' then
    return out, count, bytes
  end
  local keep
  if policy ~= 'all' then
    keep = {}
    for name in string.gmatch(string.sub(policy, 6), '[^\n]+') do
      keep[name] = true
    end
  end
  for name, value in pairs(fields) do
    if not keep or keep[name] then
      out[name] = value
      count = count + 1
      bytes = bytes + #name + #value
    end
  end
  return out, count, bytes
end

-- Keeps a user at `cap[1]` live sessions at most (0 = no cap;
-- SESSION_MAX_SESSIONS_PER_USER) after the session `handle` at `key` joined
-- the device set `set`: ends the first sessions of the set (scored by
-- expiry, so those that expire soonest: the least recently used), never
-- `handle`, and at most `cap[2]` of them in one call (bounded work).
-- The user's sessions share the prefix of `key`. Returns the handles of the
-- sessions ended.
local function cap_sessions(key, set, handle, cap)
  local gone = {}
  local max, most = cap[1], cap[2]
  if not set or max <= 0 then return gone end
  local excess = math.min(redis.call('ZCARD', set) - max, most)
  if excess <= 0 then return gone end
  local prefix = string.sub(key, 1, #key - #handle)
  local done = 0
  for _, h in ipairs(redis.call('ZRANGE', set, 0, excess)) do
    if done < excess and h ~= handle then
      done = done + 1
      if redis.call('EXISTS', prefix .. h) == 1 then
        gone[#gone + 1] = h
      end
      bury(prefix .. h, set, h)
    end
  end
  return gone
end

-- Creates a session hash holding `carried` user fields (a table) plus the
-- outcome of checked ops (`state` and `incs` from check_ops). `bind` holds the
-- binding hashes {net, ua} ('' = not bound); `cap` is {most sessions per
-- user, most sessions ended in one call} (see cap_sessions). Returns the
-- reply table {0, version, expiry, now, absolute, increments..., {handles of
-- the user's sessions the cap ended}}.
local function create(key, set, handle, now, idle, absolute, user, ua, bind, carried, state, incs, cap)
  local abs = now + absolute
  local sets = { '_created', now, '_seen', now, '_abs', abs, '_ver', 1,
    '_exp', math.min(now + idle, abs) }
  local optional = { '_user', user, '_ua', ua, '_bnet', bind[1], '_bua', bind[2] }
  for i = 1, #optional, 2 do
    if optional[i + 1] ~= '' then
      sets[#sets + 1] = optional[i]
      sets[#sets + 1] = optional[i + 1]
    end
  end
  for field, value in pairs(carried) do
    if state[field] == nil then
      sets[#sets + 1] = field
      sets[#sets + 1] = value
    end
  end
  write_ops(key, state, sets)
  local exp = expire(key, set, handle, now, abs, idle, {}, nil, 'written')
  local day = day_of(now)
  gop('C', 'st:created:' .. day, '', 0, STAT_TTL)
  if user ~= '' then
    gop('C', 'st:logins:' .. day, '', 0, STAT_TTL)
    gop('H', 'st:users:' .. day, user, 0, STAT_TTL)
  end
  local reply = { 0, 1, exp, now, abs }
  for _, r in ipairs(incs) do reply[#reply + 1] = r end
  reply[#reply + 1] = cap_sessions(key, set, handle, cap)
  return reply
end

-- The reply of a create or login whose new key already exists. Tokens are
-- 256 random bits, so that can only be this very call arriving a second time
-- (a retry after a lost response): answer as the first time did, without
-- writing anything (nor ending any session), which makes create and login
-- safe to retry.
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
  reply[#reply + 1] = {}
  return reply
end

-- Live sessions per value of the indexed `field`, at most `top` rows with the
-- largest counts first, examining at most `most` values. Prunes expired
-- entries and empty values on the way. Runs in the global slot.
-- Returns {distinct values, {value, count, ...}}.
local function ix_counts(field, top, most, now)
  local registry = gkey('iv:' .. field)
  redis.call('ZREMRANGEBYSCORE', registry, '-inf', '(' .. now)
  local rows = {}
  for _, v in ipairs(redis.call('ZREVRANGE', registry, 0, most - 1)) do
    local ix = gkey('ix:' .. field .. ':' .. v)
    redis.call('ZREMRANGEBYSCORE', ix, '-inf', '(' .. now)
    local n = redis.call('ZCARD', ix)
    if n > 0 then
      rows[#rows + 1] = { v, n }
    else
      redis.call('ZREM', registry, v)
    end
  end
  table.sort(rows, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] < b[1]
  end)
  local out = {}
  for i = 1, math.min(#rows, top) do
    out[#out + 1] = rows[i][1]
    out[#out + 1] = rows[i][2]
  end
  return { #rows, out }
end
