-- Top callers: one weighted Space-Saving step of a batch, for one rule, outcome and epoch.
-- The same math as fastapi_ratelimits.ops.top.SpaceSaving.fold (tests/test_top.py checks it).
--
-- KEYS[1]  sorted set: member = counter key, score = count (an upper bound of its hits)
-- KEYS[2]  hash: member -> error (count - error is a lower bound); field "" = hits folded
-- ARGV[1]  counters kept (k), ARGV[2] TTL in seconds, then member, weight, member, weight...
--          (members distinct). Members already counted are added to first, then the others
--          in the order given: a free counter while fewer than k, else the smallest counter
--          (ties: the lowest member, as ZPOPMIN picks it) is given up and the new member
--          takes it over with count = that count + weight and error = that count.
-- Returns {hits folded in this epoch, the largest count, counters in use}.
local z, e = KEYS[1], KEYS[2]
local k = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local added = 0
local fresh = {}
for i = 3, #ARGV, 2 do
  local w = tonumber(ARGV[i + 1])
  added = added + w
  if redis.call('ZSCORE', z, ARGV[i]) then
    redis.call('ZINCRBY', z, w, ARGV[i])
  else
    fresh[#fresh + 1] = i
  end
end
local used = redis.call('ZCARD', z)
for _, i in ipairs(fresh) do
  local m, w = ARGV[i], tonumber(ARGV[i + 1])
  if used < k then
    redis.call('ZADD', z, w, m)
    used = used + 1
  else
    local low = redis.call('ZPOPMIN', z)
    local floor = tonumber(low[2])
    redis.call('HDEL', e, low[1])
    redis.call('ZADD', z, floor + w, m)
    redis.call('HSET', e, m, floor)
  end
end
local total = redis.call('HINCRBY', e, '', added)
redis.call('EXPIRE', z, ttl)
redis.call('EXPIRE', e, ttl)
local head = redis.call('ZREVRANGE', z, 0, 0, 'WITHSCORES')
return {total, tonumber(head[2] or 0), used}
