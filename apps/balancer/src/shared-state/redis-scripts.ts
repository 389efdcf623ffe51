/**
 * The Lua scripts behind the shared state. Each runs atomically inside Redis, so a check and the
 * change it guards can never interleave with another replica's. Time is Redis's own clock (TIME),
 * so replicas' clocks never need to agree.
 *
 * Keys (P = REDIS_PREFIX, default "olb:"):
 *   P r:<replica>          "1" with a TTL of one lease: the replica is alive
 *   P replicas             sorted set replica -> expiry: how many replicas are alive
 *   P b:<backend>          sorted set lease id -> expiry: every slot held at the backend
 *   P m:<backend>|<model>  sorted set lease id -> expiry: the slots held there for one model
 *   P w:<model>            sorted set waiter -> place in line: requests waiting for the model,
 *                          member "<replica>|<waiter>|<excluded backends, comma-separated>";
 *                          the place is class x 10^12 + P wseq (incremented per enqueue): higher
 *                          classes first, then strict arrival order, no ties
 * Channels: P grant:<replica> (a slot handed to one of its waiters: "waiter|backend|lease|in flight
 * there|in flight there for the model|model"), P capacity (a backend-wide
 * slot freed that no waiter of the same model took), P events (cordons, ejections, learned stats).
 *
 * A lease that is not renewed expires: counting purges expired members first, so the slots of a
 * replica that died come back one lease time after its last heartbeat.
 */

const PRELUDE = `
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function excludes(excl, b)
  if excl == '' then return false end
  return string.find(',' .. excl .. ',', ',' .. b .. ',', 1, true) ~= nil
end
local function parseWaiter(m)
  return string.match(m, '^([^|]*)|([^|]*)|(.*)$')
end
local alive = {}
local function replicaAlive(P, rid)
  local a = alive[rid]
  if a == nil then
    a = redis.call('EXISTS', P .. 'r:' .. rid) == 1
    alive[rid] = a
  end
  return a
end
local function counts(P, b, model, now)
  local bk = P .. 'b:' .. b
  redis.call('ZREMRANGEBYSCORE', bk, '-inf', now)
  local cb = redis.call('ZCARD', bk)
  local cm = 0
  if model ~= '' then
    local mk = P .. 'm:' .. b .. '|' .. model
    redis.call('ZREMRANGEBYSCORE', mk, '-inf', now)
    cm = redis.call('ZCARD', mk)
  end
  return cb, cm
end
local function freeSlots(bcap, mcap, cb, cm, model)
  local free = 1000000000
  if bcap > 0 then free = bcap - cb end
  if model ~= '' and mcap > 0 then free = math.min(free, mcap - cm) end
  return free
end
local function take(P, b, model, lid, expiry)
  redis.call('ZADD', P .. 'b:' .. b, expiry, lid)
  if model ~= '' then redis.call('ZADD', P .. 'm:' .. b .. '|' .. model, expiry, lid) end
end
-- Hands up to free slots on b to the oldest live waiters of the model that may use b.
local function handOff(P, b, model, free, now, leaseMs, cb, cm)
  if free <= 0 then return 0 end
  local granted = 0
  local wkey = P .. 'w:' .. model
  local ws = redis.call('ZRANGE', wkey, 0, 99)
  for _, m in ipairs(ws) do
    local rid, wid, excl = parseWaiter(m)
    if rid == nil or not replicaAlive(P, rid) then
      redis.call('ZREM', wkey, m)
    elseif not excludes(excl, b) then
      redis.call('ZREM', wkey, m)
      local lid = rid .. '/' .. wid
      -- Lasts as long as its replica (renewed with the rest by its next heartbeat), so a grant to a
      -- replica that just died comes back when its other slots do, not a lease later.
      local ttl = redis.call('PTTL', P .. 'r:' .. rid)
      if ttl <= 0 or ttl > leaseMs then ttl = leaseMs end
      take(P, b, model, lid, now + ttl)
      granted = granted + 1
      redis.call('PUBLISH', P .. 'grant:' .. rid, wid .. '|' .. b .. '|' .. lid .. '|' .. (cb + granted) .. '|' .. (cm + granted) .. '|' .. model)
      if granted >= free then break end
    end
  end
  return granted
end
`;

/**
 * ACQUIRE: takes one slot on the first listed backend with room, or (enqueue) puts the request in
 * its model's waiting list. Waiters of the model older than this request reserve one slot each on
 * every backend they may use, so a newcomer never overtakes them.
 * ARGV: prefix, model ('' = none), replica, lease id, waiter member ('' = not a waiter), lease ms,
 *       enqueue (1/0), priority class (0 = highest: a waiter of a higher class is ahead of every
 *       waiter of a lower one), then (backend, backend cap, model cap) per candidate in preference
 *       order; a backend named '?name' is only counted (for the policies' view), never taken.
 * Returns: {status (1 granted, 2 queued, 0 neither), backend granted, place in line (when queued),
 *           waiters of the model ahead of it, then backend, in flight there, in flight there for
 *           the model, per candidate}.
 */
export const ACQUIRE_LUA = `${PRELUDE}
local P, model, lid, member = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local leaseMs = tonumber(ARGV[6])
local now = nowMs()
local wkey = P .. 'w:' .. model
local myScore = false
if member ~= '' then myScore = redis.call('ZSCORE', wkey, member) end
local bound = '+inf'
if myScore then bound = '(' .. myScore end
local olderCount = redis.call('ZCOUNT', wkey, '-inf', bound)
local olderExcl = {}
local dead = 0
if olderCount > 0 then
  local older = redis.call('ZRANGEBYSCORE', wkey, '-inf', bound, 'LIMIT', 0, 100)
  for _, m in ipairs(older) do
    local rid, wid, excl = parseWaiter(m)
    if rid == nil or not replicaAlive(P, rid) then
      redis.call('ZREM', wkey, m)
      dead = dead + 1
    else
      table.insert(olderExcl, excl)
    end
  end
end
-- Waiters past the first 100 are assumed to reserve every backend.
local beyond = olderCount - dead - #olderExcl
local out = {0, '', now, olderCount - dead}
for i = 9, #ARGV, 3 do
  local b = ARGV[i]
  -- '?backend': only its counts are wanted (the policies' view), no slot there.
  local countOnly = string.sub(b, 1, 1) == '?'
  if countOnly then b = string.sub(b, 2) end
  local cb, cm
  if out[1] == 1 or countOnly then
    -- Past the grant only the counts matter (for the policies' view): no purge.
    cb = redis.call('ZCARD', P .. 'b:' .. b)
    cm = 0
    if model ~= '' then cm = redis.call('ZCARD', P .. 'm:' .. b .. '|' .. model) end
  else
    cb, cm = counts(P, b, model, now)
  end
  local free = freeSlots(tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), cb, cm, model)
  if out[1] == 0 and free > 0 and not countOnly then
    local reserved = beyond
    for _, e in ipairs(olderExcl) do
      if not excludes(e, b) then reserved = reserved + 1 end
    end
    if free > reserved then
      take(P, b, model, lid, now + leaseMs)
      if myScore then redis.call('ZREM', wkey, member) end
      out[1] = 1
      out[2] = b
      cb = cb + 1
      if model ~= '' then cm = cm + 1 end
    end
  end
  table.insert(out, b)
  table.insert(out, cb)
  table.insert(out, cm)
end
if out[1] == 0 and ARGV[7] == '1' and member ~= '' then
  if myScore then
    out[3] = tonumber(myScore)
  else
    out[3] = tonumber(ARGV[8]) * 1000000000000 + redis.call('INCR', P .. 'wseq')
    redis.call('ZADD', wkey, out[3], member)
  end
  out[1] = 2
end
return out
`;

/**
 * RELEASE: gives a slot back (idempotent: a second release finds nothing) and hands the room it
 * made to the oldest waiter of the model that may use the backend, publishing the grant to that
 * waiter's replica. A replica returning a grant it cannot use passes its waiter back (requeue
 * member and score: same place in line, the backend now excluded) before the hand-off runs.
 * ARGV: prefix, backend, model, lease id, backend cap, model cap, lease ms, requeue member, score.
 * Returns: {removed (1/0), waiters granted, in flight at the backend, in flight there for the model}.
 */
export const RELEASE_LUA = `${PRELUDE}
local P, b, model, lid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bcap, mcap, leaseMs = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local removed = redis.call('ZREM', P .. 'b:' .. b, lid)
if model ~= '' then redis.call('ZREM', P .. 'm:' .. b .. '|' .. model, lid) end
if ARGV[8] ~= '' then redis.call('ZADD', P .. 'w:' .. model, 'NX', tonumber(ARGV[9]), ARGV[8]) end
local granted = 0
local cb, cm
if redis.call('EXISTS', P .. 'w:' .. model) == 1 then
  local now = nowMs()
  cb, cm = counts(P, b, model, now)
  granted = handOff(P, b, model, freeSlots(bcap, mcap, cb, cm, model), now, leaseMs, cb, cm)
else
  -- Nobody waits for the model: the counts (unpurged) are all the caller needs.
  cb = redis.call('ZCARD', P .. 'b:' .. b)
  cm = 0
  if model ~= '' then cm = redis.call('ZCARD', P .. 'm:' .. b .. '|' .. model) end
end
if granted == 0 and bcap > 0 then redis.call('PUBLISH', P .. 'capacity', b) end
if model ~= '' then cm = cm + granted end
return {removed, granted, cb + granted, cm}
`;

/**
 * HEARTBEAT: the replica is alive for one more lease, and every slot it holds is renewed (or
 * registered again, after Redis lost them) in the same round trip.
 * ARGV: prefix, replica, lease ms, then (backend, model, lease id) per held slot.
 * Returns: {replicas alive, Redis time ms}.
 */
export const HEARTBEAT_LUA = `${PRELUDE}
local P, rid, leaseMs = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = nowMs()
redis.call('SET', P .. 'r:' .. rid, '1', 'PX', leaseMs)
redis.call('ZADD', P .. 'replicas', now + leaseMs, rid)
redis.call('ZREMRANGEBYSCORE', P .. 'replicas', '-inf', now)
for i = 4, #ARGV, 3 do take(P, ARGV[i], ARGV[i + 1], ARGV[i + 2], now + leaseMs) end
return {redis.call('ZCARD', P .. 'replicas'), now}
`;

/**
 * GOODBYE: a replica shutting down cleanly takes itself, its waiters and its slots out at once
 * instead of leaving them to expire.
 * ARGV: prefix, replica, then (backend, model, lease id) per held slot.
 */
export const GOODBYE_LUA = `
local P, rid = ARGV[1], ARGV[2]
redis.call('DEL', P .. 'r:' .. rid)
redis.call('ZREM', P .. 'replicas', rid)
for i = 3, #ARGV, 3 do
  redis.call('ZREM', P .. 'b:' .. ARGV[i], ARGV[i + 2])
  if ARGV[i + 1] ~= '' then redis.call('ZREM', P .. 'm:' .. ARGV[i] .. '|' .. ARGV[i + 1], ARGV[i + 2]) end
end
return 1
`;

/**
 * RATE: a token bucket per key that refills rate tokens per minute, shared by every replica.
 * ARGV: key, rate per minute, cost. Returns {allowed (1/0), ms until enough tokens}.
 */
export const RATE_LUA = `${PRELUDE}
local k, rate, cost = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = nowMs()
local v = redis.call('HMGET', k, 't', 'u')
local tokens, upd = tonumber(v[1]), tonumber(v[2])
if tokens == nil or upd == nil then
  tokens = rate
  upd = now
end
tokens = math.min(rate, tokens + math.max(0, now - upd) * rate / 60000)
local ok, waitMs = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  ok = 1
else
  waitMs = math.ceil((cost - tokens) * 60000 / rate)
end
redis.call('HSET', k, 't', tostring(tokens), 'u', tostring(now))
redis.call('PEXPIRE', k, 120000)
return {ok, waitMs}
`;

/**
 * QUOTA: a counter per fixed window (e.g. tokens per key per hour). With limit > 0 the amount is
 * added only if the total stays within it; with limit 0 it is always added (usage known after the
 * fact). ARGV: key base, amount, limit, window ms.
 * Returns {added (1/0), total in this window, ms until the window resets}.
 */
export const QUOTA_LUA = `${PRELUDE}
local base, amount, limit, win = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = nowMs()
local slot = math.floor(now / win)
local k = base .. ':' .. slot
local cur = tonumber(redis.call('GET', k) or '0')
local resetMs = (slot + 1) * win - now
if limit > 0 and cur + amount > limit then return {0, cur, resetMs} end
if amount ~= 0 then
  cur = redis.call('INCRBY', k, amount)
  redis.call('PEXPIRE', k, win * 2)
end
return {1, cur, resetMs}
`;

/**
 * SLIDING: a sliding window of n buckets of bucketMs (e.g. 60 x 1 s, 1,440 x 1 min), as a hash
 * bucket index -> count, the same shape as UsageLedger's SlidingWindow. With limit > 0 the amount is
 * added only if the window's total stays within it; a refusal says when enough buckets expire.
 * ARGV: key, amount, limit, bucket ms, buckets.
 * Returns {added (1/0), total in the window, ms until the total is low enough (0 when added)}.
 */
export const SLIDING_LUA = `${PRELUDE}
local k, amount, limit, bucketMs, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = nowMs()
local idx = math.floor(now / bucketMs)
local oldest = idx - n + 1
local flat = redis.call('HGETALL', k)
local total = 0
local live = {}
for i = 1, #flat, 2 do
  local b = tonumber(flat[i])
  if b == nil or b < oldest then
    redis.call('HDEL', k, flat[i])
  else
    local c = tonumber(flat[i + 1])
    total = total + c
    table.insert(live, {b, c})
  end
end
if limit > 0 and total + amount > limit then
  table.sort(live, function(x, y) return x[1] < y[1] end)
  local over = total + amount - limit
  local freed = 0
  local wait = 0
  for _, e in ipairs(live) do
    freed = freed + e[2]
    if freed >= over then
      wait = (e[1] + n) * bucketMs - now
      break
    end
  end
  if freed < over then wait = -1 end
  return {0, total, wait}
end
if amount ~= 0 then
  redis.call('HINCRBY', k, tostring(idx), amount)
  redis.call('PEXPIRE', k, bucketMs * n + 1000)
  total = total + amount
end
return {1, total, 0}
`;

/**
 * REGISTER: an agent's registration (JSON with name, ollamaUrl, agentUrl, expiresAt) in the hash
 * P reg, checked and stored atomically: expired entries are dropped first; the name must not be
 * held with other URLs, the Ollama URL not by another name, and the count must stay within max.
 * ARGV: hash key, name, JSON, Ollama URL, agent URL ('' = none), now (ms), max.
 * Returns {200, created (1/0)} or {409, 'name', its Ollama URL, its expiry} or {409, 'url', the
 * name holding it} or {429}.
 */
export const REGISTER_LUA = `
local key, name, json, url, agent, now, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local function str(v)
  if v == nil or v == cjson.null then return '' end
  return tostring(v)
end
local all = redis.call('HGETALL', key)
local others, held = 0, nil
for i = 1, #all, 2 do
  local ok, r = pcall(cjson.decode, all[i + 1])
  if not ok or type(r) ~= 'table' or tonumber(r.expiresAt) == nil or tonumber(r.expiresAt) <= now then
    redis.call('HDEL', key, all[i])
  elseif all[i] == name then
    held = r
  else
    others = others + 1
    if str(r.ollamaUrl) == url then return {409, 'url', all[i]} end
  end
end
if held and (str(held.ollamaUrl) ~= url or str(held.agentUrl) ~= agent) then
  return {409, 'name', str(held.ollamaUrl), tostring(held.expiresAt)}
end
if not held and others >= max then return {429} end
redis.call('HSET', key, name, json)
if held then return {200, 0} end
return {200, 1}
`;
