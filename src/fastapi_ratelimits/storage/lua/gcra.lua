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
      return 1, math.floor((tau - new) / interval + EPS), math.ceil(new), 0, 0, {now, new}
    end
    return 0, floor_units((tau - backlog) / interval), math.ceil(backlog), math.ceil(excess), 0, {}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'ts', pending[1], 'backlog', pending[2])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
