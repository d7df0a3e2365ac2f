-- Releases a lock: deletes it only while it still holds the caller's token
-- (compare-and-delete), so a holder whose lease ran out can never delete the
-- lock of the one who took it next.
-- Keys: l the lock.
-- ARGV[2] the holder's token
-- Returns 1 when released, 0 when the lock is not (or no longer) the caller's.
if redis.call('GET', K.l) == ARGV[2] then
  redis.call('DEL', K.l)
  return 1
end
return 0
