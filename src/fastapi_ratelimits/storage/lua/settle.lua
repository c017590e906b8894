-- fastapi-ratelimits: settle budgets after the response, the twin of storage/settle.py
-- (the same operations in the same order on doubles).
--
-- KEYS: one key per limit to settle.
-- ARGV: now_us ('' = read the server clock with TIME; a number pins it, for tests), then per
--       key: algorithm, delta (actual cost - reserve), limit, window_us, burst, ttl_ms (the
--       key's ordinary TTL).
-- Each key is read, corrected by delta and written with the TTL it needs (the longer of
-- its ordinary TTL and the time its state matters: a budget in debt outlives its window).
-- Reply: {now_us, then per key: the level after settling, as text (tokens, backlog us, count)}

if redis.replicate_commands then redis.replicate_commands() end

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local reply = {now}
local a = 2
for k = 1, #KEYS do
  local key = KEYS[k]
  local algo = ARGV[a]
  local delta = tonumber(ARGV[a + 1])
  local limit = tonumber(ARGV[a + 2])
  local window = tonumber(ARGV[a + 3])
  local burst = tonumber(ARGV[a + 4])
  local ttl_ms = tonumber(ARGV[a + 5])
  a = a + 6
  local life_us, level
  if redis.call('TYPE', key).ok ~= 'hash' and redis.call('EXISTS', key) == 1 then
    redis.call('DEL', key)
  end
  if algo == 'token_bucket' then
    local tokens, ts
    local s = redis.call('HMGET', key, 'tokens', 'ts')
    if not s[1] or not tonumber(s[1]) or not tonumber(s[2]) then
      tokens, ts = burst, now
    else
      tokens, ts = tonumber(s[1]), tonumber(s[2])
      if now > ts then
        tokens = tokens + (now - ts) * limit / window
        ts = now
      end
      if tokens > burst then tokens = burst end
    end
    tokens = tokens - delta
    if tokens > burst then tokens = burst end
    redis.call('HSET', key, 'tokens', tokens, 'ts', ts)
    life_us = math.max(1, math.ceil((burst - tokens) * window / limit))
    level = tokens
  elseif algo == 'gcra' then
    local interval = window / limit
    local backlog = 0
    local s = redis.call('HMGET', key, 'ts', 'backlog')
    if s[1] and tonumber(s[1]) and tonumber(s[2]) then
      backlog = tonumber(s[2]) - (now - tonumber(s[1]))
      if backlog < 0 then backlog = 0 end
    end
    backlog = backlog + delta * interval
    if backlog < 0 then backlog = 0 end
    redis.call('HSET', key, 'ts', now, 'backlog', backlog)
    life_us = math.max(1, math.ceil(backlog))
    level = backlog
  elseif algo == 'fixed_window' then
    local win = math.floor(now / window)
    local count = 0
    local s = redis.call('HMGET', key, 'win', 'count')
    if s[1] and tonumber(s[1]) and tonumber(s[2]) and tonumber(s[1]) >= win then
      win, count = tonumber(s[1]), tonumber(s[2])
    end
    count = count + delta
    if count < 0 then count = 0 end
    redis.call('HSET', key, 'win', win, 'count', count)
    life_us = math.max(1, math.ceil((win + 1) * window - now))
    level = count
  else
    return redis.error_reply('ERR fastapi-ratelimits: cannot settle algorithm ' .. algo)
  end
  redis.call('PEXPIRE', key, math.max(ttl_ms, math.ceil(life_us / 1000) + 1))
  reply[#reply + 1] = tostring(level)
end
return reply
