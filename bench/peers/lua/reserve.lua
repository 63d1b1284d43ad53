-- The seed statement's check-and-move on one position's hash.
-- KEYS[1]: the position (fields available, reserved, sold); ARGV[1]: units.
-- 1 = reserved, 0 = out of stock (or no such position, as the UPDATE's 0 rows).
local q = tonumber(ARGV[1])
local available = tonumber(redis.call('HGET', KEYS[1], 'available'))
if available == nil or available < q then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'available', -q)
redis.call('HINCRBY', KEYS[1], 'reserved', q)
return 1
