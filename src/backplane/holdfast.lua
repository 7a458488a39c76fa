#!lua name=holdfast
-- Holdfast's Redis function library (loaded by every node at start, FUNCTION LOAD
-- REPLACE). Keys of topic T all carry the hash tag {T}, so in a Redis Cluster they live on
-- one master and the shard channel is served by it:
--   hf:{T}:s  stream: entry id 0-N is message N of the topic (XADD 0-* numbers them)
--   hf:{T}:z  the stream's entries' data sizes, oldest first;  hf:{T}:b  "SUM FIRST":
--             their sum and the oldest entry's number (kept by hf_publish when given them)
--   hf:{T}:e  the topic's epoch (its numbering's identity; new when the keys are new)
--   hf:{T}:m  shard channel: every node with subscribers of T listens (SSUBSCRIBE)
--   hf:{T}:p  presence: member -> "user\ninfo-json";  hf:{T}:x  member -> expiry (ms)
--   hf:{T}:u  presence: user -> connections
-- Both history keys get the same TTL on every publish and open, so they expire together.

local function epoch_of(key, stream, ttl)
  local e = redis.call('GET', key)
  if not e then
    local t = redis.call('TIME')
    e = string.format('%08x%05x', tonumber(t[1]), tonumber(t[2]))
    redis.call('SET', key, e)
  end
  if ttl > 0 then
    redis.call('EXPIRE', key, ttl)
    if redis.call('EXISTS', stream) == 1 then
      redis.call('EXPIRE', stream, ttl)
    end
  end
  return e
end

local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

-- The bytes of data in one stream entry (an item of XRANGE's answer).
local function entry_bytes(entry)
  local f = entry[2]
  for i = 1, #f - 1, 2 do
    if f[i] == 'd' then
      return #f[i + 1]
    end
  end
  return 0
end

-- Keep stream `s`, whose newest entry is message `seq` with `size` bytes of data, to about
-- `maxlen` entries and `max_bytes` of data, the newest entry whatever its size: the window
-- a node keeps (--replay-messages, --replay-bytes), so the broker holds no history no node
-- would load. `z` lists the entries' data sizes, oldest first, and `b` holds "SUM FIRST"
-- (their sum, the oldest entry's number), so trimming reads no message. Entries are
-- numbered 0-1, 0-2, … and trimmed only from the front, so the stream holds messages
-- FIRST … seq. It is trimmed, exactly to the bounds, once it passes them by a sixteenth
-- (as MAXLEN ~ lets a stream pass its count): a trim at every publish made a small one cost
-- Redis 1.7 times as much. When `z` does not match (another writer: a node of an earlier
-- version mid-deploy, a backend's own call; or a key expired first) both are counted again
-- from the stream, 16 entries at a time.
local function trim(s, z, b, seq, size, maxlen, max_bytes, ttl)
  local listed = redis.call('RPUSH', z, size)
  local total, first
  local kept = redis.call('GET', b)
  if kept then
    local t, f = string.match(kept, '^(%d+) (%d+)$')
    total, first = tonumber(t), tonumber(f)
  end
  if not total or not first or listed ~= seq - first + 1 then
    redis.call('DEL', z)
    total, first, listed = 0, nil, 0
    local from = '-'
    while true do
      local page = redis.call('XRANGE', s, from, '+', 'COUNT', 16)
      if #page == 0 then
        break
      end
      for _, entry in ipairs(page) do
        local n = entry_bytes(entry)
        redis.call('RPUSH', z, n)
        total, listed = total + n, listed + 1
        first = first or tonumber(string.sub(entry[1], 3))
      end
      from = '(' .. page[#page][1]
    end
    first = first or seq
  else
    total = total + size
  end
  local len = listed
  if len > 1 and (len > maxlen + math.floor(maxlen / 16)
      or total > max_bytes + math.floor(max_bytes / 16)) then
    local dropped = 0
    while len > 1 and (len > maxlen or total > max_bytes) do
      local sizes = redis.call('LRANGE', z, dropped, dropped + 63)
      if #sizes == 0 then
        break -- `z` holds `len` sizes, so this cannot be; never spin the broker on it
      end
      for _, n in ipairs(sizes) do
        if len <= 1 or (len <= maxlen and total <= max_bytes) then
          break
        end
        total, len, dropped = total - tonumber(n), len - 1, dropped + 1
      end
    end
    redis.call('LTRIM', z, dropped, -1)
    first = seq - len + 1
    redis.call('XTRIM', s, 'MINID', '0-' .. string.format('%.0f', first))
  end
  local state = string.format('%.0f %.0f', total, first)
  if ttl > 0 then
    redis.call('SET', b, state, 'EX', ttl)
    redis.call('EXPIRE', z, ttl)
  else
    redis.call('SET', b, state)
  end
end

-- FCALL hf_publish 3|5 hf:{T}:s hf:{T}:e hf:{T}:m [hf:{T}:z hf:{T}:b] KIND DATA
--       [MAXLEN [TTL [BYTES]]]
-- KIND: t (UTF-8 text) or b (binary). Returns {epoch, seq}. With the two sizes keys and
-- BYTES the stream keeps MAXLEN entries and BYTES of data (the newest whatever its size),
-- passing them by at most a sixteenth; without (a node of an earlier version, or a
-- backend's own call) about MAXLEN entries, as before.
redis.register_function('hf_publish', function(keys, args)
  local kind, data = args[1], args[2]
  if kind ~= 't' and kind ~= 'b' then
    return redis.error_reply('ERR holdfast: KIND must be t (text) or b (binary)')
  end
  if data == nil then
    return redis.error_reply('ERR holdfast: DATA is missing')
  end
  local maxlen = math.max(tonumber(args[3] or '1024') or 1024, 1)
  local ttl = tonumber(args[4] or '86400') or 86400
  local max_bytes = tonumber(args[5] or '')
  local e = epoch_of(keys[2], keys[1], ttl)
  local id
  if keys[5] and max_bytes then
    id = redis.call('XADD', keys[1], '0-*', 'k', kind, 'd', data)
    trim(keys[1], keys[4], keys[5], tonumber(string.sub(id, 3)), #data, maxlen, max_bytes, ttl)
  else
    id = redis.call('XADD', keys[1], 'MAXLEN', '~', maxlen, '0-*', 'k', kind, 'd', data)
  end
  if ttl > 0 then
    redis.call('EXPIRE', keys[1], ttl)
  end
  local seq = string.sub(id, 3)
  redis.call('SPUBLISH', keys[3], 'm ' .. e .. ' ' .. seq .. ' ' .. kind .. ' ' .. now_us() .. ' ' .. data)
  return {e, seq}
end)

-- FCALL hf_open 2 hf:{T}:s hf:{T}:e COUNT TTL [BYTES]
--   -> {epoch, newest seq, the newest entries: at most COUNT, and no more once their data
--       reaches BYTES (at least one)}
-- Without BYTES (a node of an earlier version, mid-deploy) the newest COUNT entries. With it
-- the reply is bounded by what the node's replay window keeps, not by what was published:
-- 1,024 messages of 1 MB were one reply of 1 GB, which took Redis longer to build than a
-- node waits for a reply, so that node lost the broker again at every attempt.
redis.register_function('hf_open', function(keys, args)
  local count = tonumber(args[1]) or 0
  local ttl = tonumber(args[2]) or 86400
  local max_bytes = tonumber(args[3] or '')
  local e = epoch_of(keys[2], keys[1], ttl)
  local last = '0'
  local top = redis.call('XREVRANGE', keys[1], '+', '-', 'COUNT', 1)
  if #top > 0 then
    last = string.sub(top[1][1], 3)
  end
  local entries = {}
  if count > 0 and not max_bytes then
    entries = redis.call('XREVRANGE', keys[1], '+', '-', 'COUNT', count)
  elseif count > 0 then
    local bytes, from = 0, '+'
    while #entries < count and (#entries == 0 or bytes < max_bytes) do
      local page = redis.call('XREVRANGE', keys[1], from, '-', 'COUNT', math.min(16, count - #entries))
      if #page == 0 then
        break
      end
      for _, entry in ipairs(page) do
        if #entries > 0 and bytes >= max_bytes then
          break
        end
        entries[#entries + 1] = entry
        bytes = bytes + entry_bytes(entry)
      end
      from = '(' .. page[#page][1]
    end
  end
  return {e, last, entries}
end)

local function drop_member(keys, member)
  local v = redis.call('HGET', keys[1], member)
  redis.call('ZREM', keys[2], member)
  if not v then
    return 0
  end
  redis.call('HDEL', keys[1], member)
  local user = string.match(v, '^([^\n]*)\n')
  if user and user ~= '' then
    if redis.call('HINCRBY', keys[3], user, -1) <= 0 then
      redis.call('HDEL', keys[3], user)
    end
  end
  return 1
end

-- FCALL hf_join 3 hf:{T}:p hf:{T}:x hf:{T}:u MEMBER USER INFO EXPIRES_MS -> 1 if new
redis.register_function('hf_join', function(keys, args)
  local member, user, info, expires = args[1], args[2], args[3], args[4]
  local new = redis.call('HSET', keys[1], member, user .. '\n' .. info)
  redis.call('ZADD', keys[2], expires, member)
  if new == 1 and user ~= '' then
    redis.call('HINCRBY', keys[3], user, 1)
  end
  return new
end)

-- FCALL hf_leave 3 hf:{T}:p hf:{T}:x hf:{T}:u MEMBER -> 1 if it was there
redis.register_function('hf_leave', function(keys, args)
  return drop_member(keys, args[1])
end)

-- Expired members one query drops at most: a node that died holding a million members of
-- a topic made the next query drop them all in one call, and Redis serves nobody else while
-- a function runs (500,000 took 1.6 s). Later queries drop the rest.
local DROP_MAX = 10000

-- FCALL hf_presence 3 hf:{T}:p hf:{T}:x hf:{T}:u NOW_MS LIST [MAX]
-- Drops members whose node stopped refreshing them (at most DROP_MAX), then returns
-- {connections, unique users, [member, value, ...] when LIST is 1}: at most MAX members
-- when MAX is given (when there are more, those whose node refreshed them longest ago), so
-- a query costs what it lists, not what the topic holds. Without MAX (a node of an earlier
-- version, mid-deploy) all of them. Expired members not yet dropped are neither counted as
-- connections nor listed (their users are counted until they are dropped).
redis.register_function('hf_presence', function(keys, args)
  local now = args[1]
  local gone = redis.call('ZRANGEBYSCORE', keys[2], '-inf', now, 'LIMIT', 0, DROP_MAX)
  for _, m in ipairs(gone) do
    drop_member(keys, m)
  end
  local stale = 0
  if #gone == DROP_MAX then
    stale = redis.call('ZCOUNT', keys[2], '-inf', now)
  end
  local list = {}
  if args[2] == '1' then
    local max = tonumber(args[3] or '')
    if not max then
      list = redis.call('HGETALL', keys[1])
    elseif max > 0 then
      -- Live members from the expiry index, their records in pieces (Lua's unpack takes a
      -- few thousand values at most).
      local live = redis.call('ZRANGEBYSCORE', keys[2], '(' .. now, '+inf', 'LIMIT', 0, max)
      for from = 1, #live, 1000 do
        local piece = {}
        for i = from, math.min(from + 999, #live) do
          piece[#piece + 1] = live[i]
        end
        local values = redis.call('HMGET', keys[1], unpack(piece))
        for i, m in ipairs(piece) do
          if values[i] then
            list[#list + 1] = m
            list[#list + 1] = values[i]
          end
        end
      end
    end
  end
  return {redis.call('HLEN', keys[1]) - stale, redis.call('HLEN', keys[3]), list}
end)
