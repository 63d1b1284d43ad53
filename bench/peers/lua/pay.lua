-- A payment: a pending, unexpired order becomes PAID and its lines' units
-- move from reserved to sold.
-- KEYS[1]: the order's hash; KEYS[2]: the expiry index; KEYS[3..]: its
-- lines' positions, as at checkout. 1 = paid, 0 = not pending (expired).
local o = redis.call('HMGET', KEYS[1], 'status', 'reserved_till', 'n')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if o[1] ~= 'PENDING_PAYMENT' or tonumber(o[2]) <= now then
  return 0
end
local n = tonumber(o[3])
if n ~= #KEYS - 2 then
  return redis.error_reply('order ' .. KEYS[1] .. ' has ' .. n .. ' lines')
end
for i = 1, n do
  local line = redis.call('HMGET', KEYS[1], 'k' .. i, 'q' .. i)
  if line[1] ~= KEYS[2 + i] then
    return redis.error_reply('order ' .. KEYS[1] .. ': line ' .. i .. ' is ' .. tostring(line[1]))
  end
  redis.call('HINCRBY', KEYS[2 + i], 'reserved', -tonumber(line[2]))
  redis.call('HINCRBY', KEYS[2 + i], 'sold', tonumber(line[2]))
end
redis.call('HSET', KEYS[1], 'status', 'PAID')
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
