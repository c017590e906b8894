-- fastapi-ratelimits: one decision for a batch of checks, all-or-nothing, in one call.
--
-- Composed by storage/redis/scripts.py: this file, with its marker line (below ALGORITHMS) replaced
-- by the algorithm files (token_bucket.lua, ...), each adding its entry to ALGORITHMS.
--
-- KEYS: one key per limit of every check, in order.
-- ARGV: now_us ('' = read the server clock with TIME; a number pins it, for tests),
--       dry ('1' = peek only, nothing is written; '2' = the same, and every limit is
--       reported as not charged), then one or more batches, each:
--       number of checks, then per check:
--         algorithm, shadow ('1'/'0'), cost, number of limits, then per limit:
--           limit, window_us, burst, max_delay_us, ttl_ms
-- Reply: {now_us, then per check of every batch: committed (1/0), then per limit of that
--           check: allowed (1/0), remaining, reset_us, retry_after_us, delay_us}
--        remaining and reset_us describe the key after the decision: with the cost taken
--        when the check is committed (or, dry, would be), as it is otherwise (a limit of a
--        refused batch that allowed on its own is peeked again at cost 0). reset_us is
--        the time until one more unit is available (0: the whole limit is there).
--
-- A batch is one request's decision. Every limit of every check of the batch is peeked
-- first, reading only. Then, unless dry, every check that allowed is committed when every
-- enforced (non-shadow) check allowed: a refused request takes nothing from any limit.
-- Every key written gets its TTL here. Several batches (requests coalesced into one call,
-- storage/batching.py) are decided one after the other, in order, each all-or-nothing on
-- its own: a batch sees what the batches before it took, as if each had been a call.
-- A key that cannot be read (not ours in shape) is deleted during the peek and read as
-- fresh: the only write a dry call may do.

if redis.replicate_commands then redis.replicate_commands() end -- Redis < 5; a no-op since

local EPS = 1e-9

local function ceil_us(x)
  return math.max(0, math.ceil(x))
end

local function floor_units(x)
  return math.max(0, math.floor(x + EPS))
end

local ALGORITHMS = {}

--@ALGORITHMS@

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local dry = ARGV[2] ~= '0'
local uncharged = ARGV[2] == '2' -- dry, and every limit reported as not charged
local a = 3
local k = 1
local reply = {now}
-- one pass per batch; the body keeps its indentation (it is the one-batch decision)
while a <= #ARGV do
local n_checks = tonumber(ARGV[a])
a = a + 1

local checks = {}
local admitted = true
for i = 1, n_checks do
  local name = ARGV[a]
  local algo = ALGORITHMS[name]
  if algo == nil then
    return redis.error_reply('ERR fastapi-ratelimits: no Lua implementation of algorithm ' .. name)
  end
  local check = {algo = algo, shadow = ARGV[a + 1] == '1', ok = true, limits = {}}
  local cost = tonumber(ARGV[a + 2])
  local n_limits = tonumber(ARGV[a + 3])
  a = a + 4
  for j = 1, n_limits do
    local p = {
      limit = tonumber(ARGV[a]),
      window_us = tonumber(ARGV[a + 1]),
      burst = tonumber(ARGV[a + 2]),
      max_delay_us = tonumber(ARGV[a + 3]),
    }
    local ttl_ms = tonumber(ARGV[a + 4])
    a = a + 5
    local key = KEYS[k]
    k = k + 1
    local ok, allowed, remaining, reset_us, retry_us, delay_us, pending = pcall(algo.peek, key, now, cost, p)
    if not ok then
      -- the key is not in the shape this algorithm writes (another type: WRONGTYPE, or
      -- fields that are not numbers): it is removed and starts fresh, as after an expiry.
      -- A second failure is a real error and ends the script.
      redis.call('DEL', key)
      allowed, remaining, reset_us, retry_us, delay_us, pending = algo.peek(key, now, cost, p)
    end
    if allowed ~= 1 then
      check.ok = false
    end
    check.limits[j] = {key, ttl_ms, pending, allowed, remaining, reset_us, retry_us, delay_us, p}
  end
  if not check.ok and not check.shadow then
    admitted = false
  end
  checks[i] = check
end

for i = 1, n_checks do
  local check = checks[i]
  local commit = (not dry) and admitted and check.ok
  if commit then
    for j = 1, #check.limits do
      local l = check.limits[j]
      check.algo.commit(l[1], l[3], l[2])
    end
  elseif uncharged or not (admitted and check.ok) then
    -- not charged (refused, or another check refused): a limit that allowed reports its
    -- remaining and reset as they are, with nothing taken (a peek of cost 0)
    for j = 1, #check.limits do
      local l = check.limits[j]
      if l[4] == 1 then
        local _, remaining, reset_us = check.algo.peek(l[1], now, 0, l[9])
        l[5] = remaining
        l[6] = reset_us
      end
    end
  end
  reply[#reply + 1] = commit and 1 or 0
  for j = 1, #check.limits do
    local l = check.limits[j]
    reply[#reply + 1] = l[4]
    reply[#reply + 1] = l[5]
    reply[#reply + 1] = l[6]
    reply[#reply + 1] = l[7]
    reply[#reply + 1] = l[8]
  end
end
end -- of the batches
return reply
