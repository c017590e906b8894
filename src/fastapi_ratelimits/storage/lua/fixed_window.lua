-- fixed_window: the twin of algorithms/fixed_window.py, the same operations in the same order.
-- State: hash {win, count}.
ALGORITHMS['fixed_window'] = {
  peek = function(key, now, cost, p)
    local win = math.floor(now / p.window_us)
    local count = 0
    local s = redis.call('HMGET', key, 'win', 'count')
    if s[1] then
      local stored = tonumber(s[1])
      if stored >= win then
        win, count = stored, tonumber(s[2])
      end
    end
    local ends = ceil_us((win + 1) * p.window_us - now)
    if count + cost <= p.limit then
      count = count + cost
      local reset = 0
      if count > 0 then reset = ends end
      return 1, p.limit - count, reset, 0, 0, {win, count}
    end
    local reset = 0
    if count > 0 then reset = ends end
    return 0, math.max(0, p.limit - count), reset, math.max(1, ends), 0, {win, count}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'win', pending[1], 'count', pending[2])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
