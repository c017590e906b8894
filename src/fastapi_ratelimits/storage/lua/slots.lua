-- fastapi-ratelimits: concurrency slots with leases (the same math as storage/slots.py).
--
-- KEYS[1]: a sorted set, member = holder, score = lease expiry (microseconds).
-- ARGV: op (acquire | renew | release | count), holder, max_open, lease_us,
--       now_us ('' = read the server clock with TIME; a number pins it, for tests)
-- Reply: {ok (1/0), open (holders after the operation), retry_after_us}
--
-- Ended leases (expiry <= now) are dropped first. acquire: a holder already present
-- renews; else it is added while fewer than max_open hold a slot; else refused, with the
-- time until the earliest lease ends. renew: the expiry moves to now + lease (added again
-- when it had ended). release: removed. The key lives as long as its longest lease.

if redis.replicate_commands then redis.replicate_commands() end -- Redis < 5; a no-op since

local key = KEYS[1]
local op = ARGV[1]
local holder = ARGV[2]
local max_open = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local now
if ARGV[5] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[5])
end

local kind = redis.call('TYPE', key).ok
if kind ~= 'zset' and kind ~= 'none' then
  redis.call('DEL', key) -- not ours in shape: read as empty
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now))

local function keep()
  local ttl_ms = math.ceil(lease / 1000) + 1000
  if redis.call('PTTL', key) < ttl_ms then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end

local expiry = string.format('%.0f', now + lease)
if op == 'acquire' then
  local n = redis.call('ZCARD', key)
  if not redis.call('ZSCORE', key, holder) and n >= max_open then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {0, n, math.max(1, math.floor(tonumber(first[2]) - now))}
  end
  redis.call('ZADD', key, expiry, holder)
  keep()
elseif op == 'renew' then
  redis.call('ZADD', key, expiry, holder)
  keep()
elseif op == 'release' then
  redis.call('ZREM', key, holder)
end
local n = redis.call('ZCARD', key)
if n == 0 then
  redis.call('DEL', key)
end
return {1, n, 0}
