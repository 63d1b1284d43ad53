-- A checkout, all or nothing: every line's units move from available to
-- reserved, and the order is written, pending payment until now + hold.
-- KEYS[1]: the order's hash (new); KEYS[2]: the expiry index (a sorted set
-- of order keys by reserved_till, for the sweeper); KEYS[3..]: the lines'
-- positions, distinct. ARGV[1]: hold in ms; ARGV[2..]: each line's units.
-- 1 = checked out, 0 = a line out of stock (nothing changed).
local n = #KEYS - 2
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('order exists: ' .. KEYS[1])
end
for i = 1, n do
  local available = tonumber(redis.call('HGET', KEYS[2 + i], 'available'))
  if available == nil or available < tonumber(ARGV[1 + i]) then
    return 0
  end
end
local t = redis.call('TIME')
local till = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local order = {'status', 'PENDING_PAYMENT', 'reserved_till', till, 'n', n}
for i = 1, n do
  local q = tonumber(ARGV[1 + i])
  redis.call('HINCRBY', KEYS[2 + i], 'available', -q)
  redis.call('HINCRBY', KEYS[2 + i], 'reserved', q)
  table.insert(order, 'k' .. i)
  table.insert(order, KEYS[2 + i])
  table.insert(order, 'q' .. i)
  table.insert(order, q)
end
redis.call('HSET', KEYS[1], unpack(order))
redis.call('ZADD', KEYS[2], till, KEYS[1])
return 1
