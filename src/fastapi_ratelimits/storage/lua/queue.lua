-- queue: the twin of algorithms/queue.py, the same operations in the same order.
-- State: hash {ts, backlog}, as gcra.
ALGORITHMS['queue'] = {
  peek = function(key, now, cost, p)
    local interval = p.window_us / p.limit
    local tau = interval * p.burst
    local backlog = 0
    local s = redis.call('HMGET', key, 'ts', 'backlog')
    if s[1] then
      backlog = tonumber(s[2]) - (now - tonumber(s[1]))
      if backlog < 0 then backlog = 0 end
    end
    local new = backlog + interval * cost
    local delay = new - tau
    local max_delay = p.max_delay_us
    if delay <= max_delay + interval * EPS then
      local wait = 0
      if delay > 0 then wait = math.ceil(delay) end
      if wait > max_delay then wait = max_delay end
      local r = math.floor((max_delay - delay) / interval + EPS)
      local reset = 0
      if interval * (r + 1) <= tau + max_delay + interval * EPS then
        reset = ceil_us(new + interval * (r + 1) - tau - max_delay)
      end
      return 1, r, reset, 0, wait, {now, new}
    end
    local r = floor_units((max_delay + tau - backlog) / interval)
    local reset = 0
    if interval * (r + 1) <= tau + max_delay + interval * EPS then
      reset = ceil_us(backlog + interval * (r + 1) - tau - max_delay)
    end
    return 0, r, reset, math.ceil(delay - max_delay), 0, {}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'ts', pending[1], 'backlog', pending[2])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
