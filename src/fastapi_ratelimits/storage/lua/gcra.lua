-- gcra: the twin of algorithms/gcra.py, the same operations in the same order.
-- State: hash {tat}.
ALGORITHMS['gcra'] = {
  peek = function(key, now, cost, p)
    local interval = p.window_us / p.limit
    local tau = interval * p.burst
    local tat = now
    local s = redis.call('HGET', key, 'tat')
    if s then
      tat = math.max(tonumber(s), now)
    end
    local new_tat = tat + interval * cost
    local allow_at = new_tat - tau
    if allow_at <= now then
      local remaining = floor_units((now - allow_at) / interval)
      return 1, remaining, ceil_us(new_tat - now), 0, 0, {new_tat}
    end
    local remaining = floor_units((now - (tat - tau)) / interval)
    return 0, remaining, ceil_us(tat - now), ceil_us(allow_at - now), 0, {tat}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'tat', pending[1])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
