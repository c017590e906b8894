-- queue: the twin of algorithms/queue.py, the same operations in the same order.
-- State: hash {tat}.
ALGORITHMS['queue'] = {
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
    local delay = allow_at - now
    if delay <= p.max_delay_us then
      local wait = ceil_us(delay)
      local remaining = floor_units((now + p.max_delay_us - allow_at) / interval)
      return 1, remaining, ceil_us(new_tat - now), 0, wait, {new_tat}
    end
    local retry = ceil_us(delay - p.max_delay_us)
    return 0, 0, ceil_us(tat - now), retry, 0, {tat}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'tat', pending[1])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
