-- leaky_bucket: the twin of algorithms/leaky_bucket.py, the same operations in the same order.
-- State: hash {level, ts}.
ALGORITHMS['leaky_bucket'] = {
  peek = function(key, now, cost, p)
    local cap = p.burst
    local level, ts
    local s = redis.call('HMGET', key, 'level', 'ts')
    if not s[1] then
      level, ts = 0, now
    else
      level, ts = tonumber(s[1]), tonumber(s[2])
    end
    local elapsed = now - ts
    if elapsed > 0 then
      level = math.max(0, level - elapsed * p.limit / p.window_us)
    end
    ts = math.max(ts, now)
    if level + cost <= cap + EPS then
      local new_level = level + cost
      local r = floor_units(cap - new_level)
      local reset = 0
      if new_level > EPS then reset = ceil_us((new_level + (r + 1) - cap) * p.window_us / p.limit) end
      return 1, r, reset, 0, 0, {new_level, ts}
    end
    local retry = ceil_us((level + cost - cap) * p.window_us / p.limit)
    local r = floor_units(cap - level)
    local reset = 0
    if level > EPS then reset = ceil_us((level + (r + 1) - cap) * p.window_us / p.limit) end
    return 0, r, reset, retry, 0, {level, ts}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'level', pending[1], 'ts', pending[2])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
