-- The sweeper: orders still pending past their reserved_till become
-- EXPIRED and their lines' units go back from reserved to available.
-- KEYS[1]: the expiry index; ARGV[1]: orders per call at most.
-- Returns the orders expired. The orders' and positions' keys come from
-- the index and the orders (not declared: fine on one server, not on a
-- cluster).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local expired = 0
for _, key in ipairs(due) do
  local o = redis.call('HMGET', key, 'status', 'n')
  if o[1] == 'PENDING_PAYMENT' then
    for i = 1, tonumber(o[2]) do
      local line = redis.call('HMGET', key, 'k' .. i, 'q' .. i)
      local q = tonumber(line[2])
      redis.call('HINCRBY', line[1], 'available', q)
      redis.call('HINCRBY', line[1], 'reserved', -q)
    end
    redis.call('HSET', key, 'status', 'EXPIRED')
    expired = expired + 1
  end
  redis.call('ZREM', KEYS[1], key)
end
return expired
