-- sliding_window: the twin of algorithms/sliding_window.py, the same operations in the same order.
-- State: hash {win, cur, prev}.
-- until one more unit (r + 1 remaining): the previous window fading, or the current one
-- becoming the previous and fading in its turn; 0 when all n are there already
local function sw_next(start, w, n, r, cur, prev, now)
  local e = n - r - 1
  if e < 0 then return 0 end
  if cur <= e and prev > 0 then
    return ceil_us(start + w - (e - cur) * w / prev - now)
  end
  return ceil_us(start + w + w - e * w / cur - now)
end

ALGORITHMS['sliding_window'] = {
  peek = function(key, now, cost, p)
    local w = p.window_us
    local n = p.limit
    local win = math.floor(now / w)
    local cur = 0
    local prev = 0
    local s = redis.call('HMGET', key, 'win', 'cur', 'prev')
    if s[1] then
      local stored = tonumber(s[1])
      if stored >= win then
        win, cur, prev = stored, tonumber(s[2]), tonumber(s[3])
      elseif stored == win - 1 then
        prev = tonumber(s[2])
      end
    end
    local start = win * w
    local elapsed = math.min(math.max(now - start, 0), w)
    local est = prev * (w - elapsed) / w + cur
    if est + cost <= n + EPS then
      local r = floor_units(n - est - cost)
      return 1, r, sw_next(start, w, n, r, cur + cost, prev, now), 0, 0, {win, cur + cost, prev}
    end
    local retry
    if cost > n then
      retry = ceil_us(start + 2 * w - now)
    elseif cur + cost <= n then
      retry = ceil_us(start + w - (n - cost - cur) * w / prev - now)
    else
      retry = ceil_us(start + w + w - (n - cost) * w / cur - now)
    end
    local r = floor_units(n - est)
    return 0, r, sw_next(start, w, n, r, cur, prev, now), math.max(1, retry), 0, {win, cur, prev}
  end,
  commit = function(key, pending, ttl_ms)
    redis.call('HSET', key, 'win', pending[1], 'cur', pending[2], 'prev', pending[3])
    redis.call('PEXPIRE', key, ttl_ms)
  end,
}
