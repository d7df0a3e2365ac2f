-- Redis Cluster only: runs the global operations (indexes, statistics) that
-- a session script in another slot returned (see finish() and gop()).
-- Idempotent enough to repeat, and self-healing: an index entry lives at most
-- until the expiry it was given, and queries check every entry they return.
-- Keys: g any global key (for routing to the global slot).
-- ARGV[2..] quintuples (op, name, member, score, extra).
local now = now_ms()
for i = 2, #ARGV, 5 do
  gexec(ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]),
    tonumber(ARGV[i + 4]), now)
end
return 1
