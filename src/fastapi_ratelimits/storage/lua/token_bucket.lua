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
    end
    local elapsed = now - ts
    if elapsed > 0 then
      tokens = math.min(cap, tokens + elapsed * p.limit / p.window_us)
    end
    ts = math.max(ts, now)
    if tokens + EPS >= cost then
      local left = math.max(0, tokens - cost)
      local reset = ceil_us((cap - left) * p.window_us / p.limit)
      return 1, floor_units(left), reset, 0, 0, {left, ts}
    end
    local retry = ceil_us((cost - tokens) * p.window_us / p.limit)
    local reset = ceil_us((cap - tokens) * p.window_us / p.limit)
    return 0, floor_units(tokens), reset, retry, 0, {tokens, ts}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'tokens', pending[1], 'ts', pending[2])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
