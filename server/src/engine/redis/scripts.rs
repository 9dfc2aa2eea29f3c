//! Lua scripts: each multi-key step of the Redis engine runs atomically on the server.

use std::sync::LazyLock;

use redis::Script;

/// Appends a message to the channel's stream (capped exactly by length, and by age) and
/// publishes it, in one step: the stream id is the message id, and history and live delivery
/// never disagree. Records the newest id ever trimmed, so a `since` replay can report a gap.
///
/// KEYS: stream, pub/sub channel, trimmed-through key.
/// ARGV: max length, max age ms, user id, name, text, channel.
pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local maxlen = tonumber(ARGV[1])
local age = tonumber(ARGV[2])
local excess = redis.call('XLEN', KEYS[1]) - maxlen + 1
if excess > 0 then
  local victims = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  if #victims > 0 then redis.call('SET', KEYS[3], victims[#victims][1]) end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'u', ARGV[3], 'n', ARGV[4], 'm', ARGV[5])
if age > 0 then
  local minid = tostring(tonumber(string.match(id, '^(%d+)')) - age)
  local newest_old = redis.call('XREVRANGE', KEYS[1], '(' .. minid .. '-0', '-', 'COUNT', 1)
  if #newest_old > 0 then
    redis.call('SET', KEYS[3], newest_old[1][1])
    redis.call('XTRIM', KEYS[1], 'MINID', minid)
  end
  redis.call('PEXPIRE', KEYS[1], age)
  -- Outlive the stream, so that a late resume still learns about the gap.
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], age * 4) end
end
redis.call('PUBLISH', KEYS[2], cjson.encode({t = 'm', id = id, c = ARGV[6], u = ARGV[3], n = ARGV[4], m = ARGV[5]}))
return id
"#,
    )
});

/// Counts a (node, key) membership: adds `member` to the node's set and, when new, increments
/// the per-key node count. Returns 1 when the count went from 0 to 1 (first node).
///
/// KEYS: node set, counts hash. ARGV: set member, hash field.
pub static COUNT_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then return 1 end
end
return 0
"#,
    )
});

/// Undoes [`COUNT_ADD`]. Returns 1 when the count reached 0 (no node left).
pub static COUNT_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    return 1
  end
end
return 0
"#,
    )
});

/// Sets a name; with uniqueness, claims the lower-cased name for the user or fails (0).
///
/// KEYS: names, owners (lower name → user), name keys (user → lower name).
/// ARGV: user, name, lower name, "1" for unique.
pub static SET_NAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[4] == '1' then
  local owner = redis.call('HGET', KEYS[2], ARGV[3])
  if owner and owner ~= ARGV[1] then return 0 end
  local old = redis.call('HGET', KEYS[3], ARGV[1])
  if old and old ~= ARGV[3] then redis.call('HDEL', KEYS[2], old) end
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"#,
    )
});

/// Forgets everything a dead node held: its presence entries (returning the `channel\nuser`
/// pairs that no node holds any more, for `user_left`) and its online users.
///
/// KEYS: node presence set, node users set, nodes zset, the node's liveness key.
/// ARGV: key prefix, node id.
pub static REAP_NODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[4]) == 1 then return {} end
local gone = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local sep = string.find(member, '\n', 1, true)
  if sep then
    local channel = string.sub(member, 1, sep - 1)
    local user = string.sub(member, sep + 1)
    local key = ARGV[1] .. 'presence:' .. channel
    if redis.call('HINCRBY', key, user, -1) <= 0 then
      redis.call('HDEL', key, user)
      table.insert(gone, member)
    end
  end
end
local online = ARGV[1] .. 'online'
for _, user in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('HINCRBY', online, user, -1) <= 0 then redis.call('HDEL', online, user) end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return gone
"#,
    )
});

/// Adds a user to a block list unless the list holds `max` others already, bumps the list's
/// version and publishes the new list on the control channel (so nodes apply lists in the order
/// they were made). Returns `{version, list}`, or nil (nothing changed) when the list is full.
///
/// KEYS: block set, versions hash, control pub/sub channel. ARGV: max, target, blocking user.
pub static BLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 then
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return false end
  redis.call('SADD', KEYS[1], ARGV[2])
end
local v = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
local list = redis.call('SMEMBERS', KEYS[1])
redis.call('PUBLISH', KEYS[3], cjson.encode({t = 'k', u = ARGV[3], v = v, b = list}))
return {v, list}
"#,
    )
});

/// Removes a user from a block list, bumps its version and publishes the new list (cjson
/// encodes an empty one as `{}`). Returns `{version, list}`.
///
/// KEYS: block set, versions hash, control pub/sub channel. ARGV: target, blocking user.
pub static UNBLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('SREM', KEYS[1], ARGV[1])
local v = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
local list = redis.call('SMEMBERS', KEYS[1])
redis.call('PUBLISH', KEYS[3], cjson.encode({t = 'k', u = ARGV[2], v = v, b = list}))
return {v, list}
"#,
    )
});
