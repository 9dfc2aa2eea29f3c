//! Lua scripts: each multi-key step of the Redis engine runs atomically on the server. A script
//! only touches keys of one hash tag (see [`super::keys`]), so it runs on a cluster too.

use std::sync::LazyLock;

use redis::Script;

/// Trims a stream to its length and age, recording the newest id ever trimmed in the marker (so
/// that a `since` replay can report a gap; the marker outlives the stream by 4 ages). Runs with
/// locals `stream`, `marker`, `maxlen` and `age` (ms, 0: none) set.
const TRIM_LUA: &str = r#"
local trimmed = nil
local excess = redis.call('XLEN', stream) - tonumber(maxlen)
if excess > 0 then
  local victims = redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)
  trimmed = victims[#victims][1]
  redis.call('XTRIM', stream, 'MAXLEN', maxlen)
end
if age > 0 then
  local now = redis.call('TIME')
  local minid = tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age)
  local newest_old = redis.call('XREVRANGE', stream, '(' .. minid .. '-0', '-', 'COUNT', 1)
  if #newest_old > 0 then
    trimmed = newest_old[1][1]
    redis.call('XTRIM', stream, 'MINID', minid)
  end
end
if trimmed then
  if age > 0 then
    redis.call('SET', marker, trimmed, 'PX', age * 4)
  else
    redis.call('SET', marker, trimmed)
  end
elseif age > 0 and redis.call('EXISTS', marker) == 1 then
  redis.call('PEXPIRE', marker, age * 4)
end
"#;

/// Appends a message to the channel's stream and publishes it, in one step: the stream id is the
/// message id, and history and live delivery never disagree. The payload is built by the node,
/// but for the id: `ARGV[7] .. id .. '"}'`.
///
/// Keeping the stream short and fresh is amortised: with `ARGV[2]` = `1` (a node asks at most
/// once a second per channel) the stream is trimmed ([`TRIM`]) and its expiry renewed. Between
/// two such calls a stream may hold a second's messages more; every history read trims first, so
/// what a reader sees is exact.
///
/// KEYS: stream, pub/sub channel, trimmed-through key (one slot: the channel's tag).
/// ARGV: max length, maintain (`1`/`0`), max age ms (0: none), user id, name, text, payload
/// head, `PUBLISH` or `SPUBLISH`, expiry ms of the stream.
pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
local id = redis.call('XADD', KEYS[1], '*', 'u', ARGV[4], 'n', ARGV[5], 'm', ARGV[6])
redis.call(ARGV[8], KEYS[2], ARGV[7] .. id .. '"}}')
if ARGV[2] == '1' then
  local stream, marker, maxlen, age = KEYS[1], KEYS[3], ARGV[1], tonumber(ARGV[3])
  {TRIM_LUA}
  if age > 0 then redis.call('PEXPIRE', stream, ARGV[9]) end
end
return id
"#
    ))
});

/// Trims a channel's stream before it is read ([`TRIM_LUA`]), so that a read never sees more
/// than the length and age kept, and a gap is reported exactly.
///
/// KEYS: stream, trimmed-through key. ARGV: max length, max age ms (0: none).
pub static TRIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
local stream, marker, maxlen, age = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
{TRIM_LUA}
return 0
"#
    ))
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
