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
      local r = math.floor(left + EPS)
      local reset = 0
      if left + EPS < cap then reset = math.ceil((r + 1 - left) * p.window_us / p.limit) end
      return 1, r, reset, 0, 0, {left, ts}
    end
    local r = math.floor(tokens + EPS)
    local reset = 0
    if tokens + EPS < cap then reset = math.ceil((r + 1 - tokens) * p.window_us / p.limit) end
    return 0, math.max(r, 0), reset, math.ceil((cost - tokens) * p.window_us / p.limit), 0, {}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'tokens', pending[1], 'ts', pending[2])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
