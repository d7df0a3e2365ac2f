-- Renews a lock's lease: sets its TTL only while it still holds the caller's
-- token (compare-and-pexpire).
-- Keys: l the lock.
-- ARGV[2] the holder's token, ARGV[3] the new lease in ms
-- Returns 1 when renewed, 0 when the lock is not (or no longer) the caller's.
if redis.call('GET', K.l) == ARGV[2] then
  redis.call('PEXPIRE', K.l, ARGV[3])
  return 1
end
return 0
