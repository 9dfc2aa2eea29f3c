//! Lua scripts: each multi-key step of the Redis engine runs atomically on the server. A script
//! only touches keys of one hash tag (see [`super::keys`]), so it runs on a cluster too.

use std::sync::LazyLock;

use redis::Script;

/// Appends a message to the channel's stream (capped exactly by length, and by age) and
/// publishes it, in one step: the stream id is the message id, and history and live delivery
/// never disagree. Records the newest id ever trimmed, so a `since` replay can report a gap.
///
/// KEYS: stream, pub/sub channel, trimmed-through key (one slot: the channel's tag).
/// ARGV: max length, max age ms, user id, name, text, channel, `PUBLISH` or `SPUBLISH`.
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
redis.call(ARGV[7], KEYS[2], cjson.encode({t = 'm', id = id, c = ARGV[6], u = ARGV[3], n = ARGV[4], m = ARGV[5]}))
return id
"#,
    )
});

/// Records that a node holds a user in a channel and, when that is new, counts the node for the
/// user. Returns 1 when the count went from 0 to 1 (the first node). Repeating it changes
/// nothing, so a retried or re-asserted call never counts twice.
///
/// KEYS: the channel's `user\nnode` set, its counts hash. ARGV: `user\nnode`, user.
pub static PRESENCE_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then return 1 end
end
return 0
"#,
    )
});

/// Undoes [`PRESENCE_ADD`]. Returns 1 when the count reached 0 (no node left).
pub static PRESENCE_REMOVE: LazyLock<Script> = LazyLock::new(|| {
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

/// Claims a lower-cased unique name for a user unless another user holds it. Returns 1 when the
/// user holds it now.
///
/// KEYS: the name's owner key. ARGV: user.
pub static CLAIM_NAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"#,
    )
});

/// Gives up a unique name if the user still holds it.
///
/// KEYS: the name's owner key. ARGV: user.
pub static RELEASE_NAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// Adds a user to a block list unless the list holds `max` others already and bumps the list's
/// version (nodes apply lists in version order). Returns `{version, list}`, or nil (nothing
/// changed) when the list is full.
///
/// KEYS: block set, version. ARGV: max, target.
pub static BLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 then
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return false end
  redis.call('SADD', KEYS[1], ARGV[2])
end
local v = redis.call('INCR', KEYS[2])
return {v, redis.call('SMEMBERS', KEYS[1])}
"#,
    )
});

/// Removes a user from a block list and bumps its version. Returns `{version, list}`.
///
/// KEYS: block set, version. ARGV: target.
pub static UNBLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('SREM', KEYS[1], ARGV[1])
local v = redis.call('INCR', KEYS[2])
return {v, redis.call('SMEMBERS', KEYS[1])}
"#,
    )
});
