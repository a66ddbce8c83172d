"""The Lua scripts that change a run or the login state: each runs atomically inside Redis,
so the offset check, the ownership check, the write and the wake-up are one step that no
other server can interleave with.

Offsets are byte counts, so Lua's numbers (doubles) hold them exactly; ``string.len``
counts bytes. Every script that appends publishes its wake-up on the channel in the same
step: a server that hears it can already read the record.
"""

# KEYS: run, log, lease, unfinished, session runs, run sessions
# ARGV: run_id, session_id, token, line, lease_ms, nonce, channel, message, carries_session
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local offset = string.len(ARGV[4]) + 1
redis.call('DEL', KEYS[2])
redis.call('XADD', KEYS[2], offset .. '-0', 'l', ARGV[4])
redis.call('HSET', KEYS[1], 'session', ARGV[2], 'committed', offset, 'terminal', '', 'nonce', ARGV[6])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[5])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[5], 0, ARGV[1])
if ARGV[9] == '0' then redis.call('HSET', KEYS[6], ARGV[1], ARGV[2]) end
redis.call('PUBLISH', ARGV[7], ARGV[8])
return offset
"""

# The writer says where it believes the log ends (``expected``): a mismatch is a conflict,
# except when the log already ends with exactly this line at exactly the new offset, which
# is this same append retried after a lost reply.
# KEYS: run, log, lease, unfinished
# ARGV: token, expected, line, type, is_terminal, lease_ms, channel, message, run_id
APPEND = """
local state = redis.call('HMGET', KEYS[1], 'committed', 'terminal')
if not state[1] then return {'missing', 0} end
local committed = tonumber(state[1])
local expected = tonumber(ARGV[2])
local offset = expected + string.len(ARGV[3]) + 1
if committed ~= expected then
  if committed == offset then
    local entry = redis.call('XRANGE', KEYS[2], offset .. '-0', offset .. '-0')
    if #entry == 1 and entry[1][2][2] == ARGV[3] then return {'ok', offset} end
  end
  return {'conflict', committed}
end
if state[2] ~= '' then return {'ended', committed} end
local holder = redis.call('GET', KEYS[3])
if not holder then
  -- lapsed while nobody ended the run (the owner was only slow): take it back
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[6])
elseif holder ~= ARGV[1] then
  return {'lost', committed}
end
redis.call('XADD', KEYS[2], offset .. '-0', 'l', ARGV[3])
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'committed', offset, 'terminal', ARGV[4])
  redis.call('HDEL', KEYS[4], ARGV[9])
else
  redis.call('HSET', KEYS[1], 'committed', offset)
end
redis.call('PUBLISH', ARGV[7], ARGV[8])
return {'ok', offset}
"""

# Appends run.interrupted to a run whose lease is gone and whose last record is not
# terminal. Atomic, so of several servers noticing at once exactly one appends it.
# KEYS: run, log, lease, unfinished
# ARGV: line, channel, message, run_id
INTERRUPT = """
local committed = redis.call('HGET', KEYS[1], 'committed')
if not committed then return 'missing' end
if redis.call('HGET', KEYS[1], 'terminal') ~= '' then return 'terminal' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'locked' end
local offset = tonumber(committed) + string.len(ARGV[1]) + 1
redis.call('XADD', KEYS[2], offset .. '-0', 'l', ARGV[1])
redis.call('HSET', KEYS[1], 'committed', offset, 'terminal', 'run.interrupted')
redis.call('HDEL', KEYS[4], ARGV[4])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 'recovered'
"""

# The owner's periodic renewal. A lease that lapsed while nobody ended the run is taken
# back (the owner was only slow, e.g. Redis restarted); one that another token holds, or a
# run that ended, is lost for good. Answers a pending cancel request too.
# KEYS: lease, run, cancel
# ARGV: token, lease_ms
RENEW = """
local terminal = redis.call('HGET', KEYS[2], 'terminal')
if not terminal then return {'missing'} end
if terminal ~= '' then return {'ended'} end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {'lost'} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local by = redis.call('GET', KEYS[3])
if by then return {'cancel', by} end
return {'ok'}
"""

# KEYS: lease; ARGV: token
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: run, cancel; ARGV: by, channel, message, ttl_seconds
REQUEST_CANCEL = """
local terminal = redis.call('HGET', KEYS[1], 'terminal')
if not terminal or terminal ~= '' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4], 'NX')
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# A token's two entries change together: the lookup by hash and the name (names are unique).
# KEYS: tokens, token names; ARGV: name, sha256, entry JSON
ADD_TOKEN = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# KEYS: tokens, token names; ARGV: name
REVOKE_TOKEN = """
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], cjson.decode(entry)['sha256'])
return 1
"""

# Failed logins of one client in a sliding window, counted on Redis's clock so servers with
# different clocks count alike. Records a failure when ARGV[3] is non-empty (it is the
# member: unique per failure), keeps at most ARGV[1] of them, and answers the milliseconds
# until the client may try again (0: now).
# KEYS: failures; ARGV: attempts, window_ms, failure id or ''
LOGIN_FAILURES = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local attempts = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -attempts - 1)
  redis.call('PEXPIRE', KEYS[1], window)
end
if redis.call('ZCARD', KEYS[1]) < attempts then return 0 end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(0, tonumber(oldest[2]) + window - now)
"""
