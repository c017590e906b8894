-- gcra: the twin of algorithms/gcra.py, the same operations in the same order.
-- State: hash {ts, backlog} (tat = ts + backlog; the small backlog keeps the
-- fractions of the interval exact at epoch-sized clock values).
ALGORITHMS['gcra'] = {
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
    local excess = new - tau
    if excess <= interval * EPS then
      local r = math.floor((tau - new) / interval + EPS)
      local reset = 0
      if r < p.burst then reset = ceil_us(new + interval * (r + 1) - tau) end
      return 1, r, reset, 0, 0, {now, new}
    end
    local r = floor_units((tau - backlog) / interval)
    local reset = 0
    if r < p.burst then reset = ceil_us(backlog + interval * (r + 1) - tau) end
    return 0, r, reset, math.ceil(excess), 0, {}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'ts', pending[1], 'backlog', pending[2])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
