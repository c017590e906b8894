-- sliding_window_log: the twin of algorithms/sliding_window_log.py, the same operations in
-- the same order. State: sorted set, one member per admitted unit, scored by its time.
-- Members are unique: "<stamp>:<n>", n counting the units already stamped at that time.
-- The peek only reads: entries at or before the horizon are skipped (ranks start after
-- them), as the Python drops them; the commit removes them for real.
local function log_at(key, rank)
  return tonumber(redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')[2])
end

ALGORITHMS['sliding_window_log'] = {
  peek = function(key, now, cost, p)
    local horizon = now - p.window_us
    local expired = redis.call('ZCOUNT', key, '-inf', horizon)
    local count = redis.call('ZCARD', key) - expired
    if count + cost <= p.limit then
      local stamp = now
      if count > 0 then
        stamp = math.max(now, log_at(key, expired + count - 1))
      end
      local oldest = stamp
      if count > 0 then
        oldest = log_at(key, expired)
      end
      local reset = 0
      if count + cost > 0 then reset = ceil_us(oldest + p.window_us - now) end
      return 1, p.limit - count - cost, reset, 0, 0, {horizon, stamp, cost}
    end
    local retry
    if cost > p.limit then
      retry = p.window_us
    else
      local k = count + cost - p.limit
      retry = ceil_us(log_at(key, expired + k - 1) + p.window_us - now)
    end
    local reset = 0
    if count > 0 then
      reset = ceil_us(log_at(key, expired) + p.window_us - now)
    end
    return 0, math.max(0, p.limit - count), reset, math.max(1, retry), 0, {horizon, 0, 0}
  end,
  commit = function(key, pending, ttl_ms)
    local horizon, stamp, cost = pending[1], pending[2], pending[3]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', horizon)
    local base = redis.call('ZCOUNT', key, stamp, stamp)
    local tag = string.format('%.17g', stamp) .. ':'
    local args = {}
    for i = 1, cost do
      args[#args + 1] = stamp
      args[#args + 1] = tag .. string.format('%d', base + i)
      if #args >= 1000 then
        redis.call('ZADD', key, unpack(args))
        args = {}
      end
    end
    if #args > 0 then
      redis.call('ZADD', key, unpack(args))
    end
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
