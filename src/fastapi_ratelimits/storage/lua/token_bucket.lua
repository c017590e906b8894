-- token_bucket: the twin of algorithms/token_bucket.py, the same operations in the same order.
-- State: hash {tokens, ts}.
ALGORITHMS['token_bucket'] = {
  peek = function(key, now, cost, p)
    local cap = p.burst
    local tokens, ts
    local s = redis.call('HMGET', key, 'tokens', 'ts')
    if not s[1] then
      tokens, ts = cap, now
    else
      tokens, ts = tonumber(s[1]), tonumber(s[2])
      if now > ts then
        tokens = tokens + (now - ts) * p.limit / p.window_us
        ts = now
      end
      if tokens > cap then tokens = cap end
    end
    if tokens + EPS >= cost then
      local left = tokens - cost
      if left < 0 then left = 0 end
      return 1, math.floor(left + EPS), math.ceil((cap - left) * p.window_us / p.limit), 0, 0, {left, ts}
    end
    return 0, floor_units(tokens), math.ceil((cap - tokens) * p.window_us / p.limit),
      math.ceil((cost - tokens) * p.window_us / p.limit), 0, {}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'tokens', pending[1], 'ts', pending[2])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
