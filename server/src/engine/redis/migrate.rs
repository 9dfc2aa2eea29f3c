//! One-time upgrade of a single Redis written by versions before the cluster mode, whose keys
//! had no hash tags (`chat:guests` as one hash, `chat:mute:USER`, `chat:history:CHANNEL`...).
//! What a deployment keeps is carried over to the tagged layout ([`super::keys`]): guests,
//! names, unique-name claims, mutes and bans (with their expiry), block lists and channel
//! history; what nodes rebuild on their own (presence, online users, node records) is dropped.
//! Runs when the engine starts, once per prefix (a marker key records the layout), with a lock
//! so that nodes starting together do it once. All nodes of the old version must be stopped
//! first (docs/DEPLOY.md).

use std::time::Duration;

use redis::AsyncCommands;

use super::{Conn, Keys};

/// The layout written by this version.
const LAYOUT: i64 = 2;

/// A key of the tagged layout, from its id.
type NewKey = fn(&Keys, &str) -> String;

/// How long the upgrade lock is held at most (other nodes wait as long for the upgrade).
const LOCK_MS: u64 = 600_000;

/// Keys per SCAN/HSCAN step.
const BATCH: usize = 500;

/// Carries an old-layout deployment under `keys`' prefix over, unless done already.
pub(super) async fn upgrade(conn: &Conn, keys: &Keys) -> redis::RedisResult<()> {
    let mut conn = conn.clone();
    let marker = format!("{}layout", keys.prefix());
    if conn.get::<_, Option<i64>>(&marker).await? == Some(LAYOUT) {
        return Ok(());
    }
    let lock = format!("{}layout-upgrade", keys.prefix());
    let locked: bool = redis::cmd("SET")
        .arg(&lock)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(LOCK_MS)
        .query_async::<Option<String>>(&mut conn)
        .await?
        .is_some();
    if !locked {
        // Another node is upgrading: wait for it.
        for _ in 0..LOCK_MS / 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if conn.get::<_, Option<i64>>(&marker).await? == Some(LAYOUT) {
                return Ok(());
            }
        }
        return Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "another node started upgrading the Redis layout and did not finish",
        )));
    }
    let moved = carry_over(&mut conn, keys).await?;
    let () = conn.set(&marker, LAYOUT).await?;
    let _: i64 = conn.del(&lock).await?;
    if moved > 0 {
        tracing::info!(
            keys = moved,
            prefix = keys.prefix(),
            "Redis data upgraded to the hash-tagged layout"
        );
    }
    Ok(())
}

/// Moves everything; returns how many old keys and fields were carried over.
async fn carry_over(conn: &mut Conn, keys: &Keys) -> redis::RedisResult<usize> {
    let prefix = keys.prefix();
    let mut moved = 0;
    // Hashes of the old layout: field → one key each.
    let hashes: [(&str, NewKey); 4] = [
        ("guests", Keys::guest),
        ("names", Keys::name),
        ("name-keys", Keys::name_key),
        ("block-versions", Keys::block_version),
    ];
    for (old, new) in hashes {
        moved += split_hash(conn, &format!("{prefix}{old}"), |field| new(keys, field)).await?;
    }
    moved += split_hash(conn, &format!("{prefix}name-owners"), |lower| {
        keys.name_owner(lower)
    })
    .await?;
    // Keys of one id each: renamed (a rename keeps the expiry of a mute or a ban).
    let renamed: [(&str, NewKey); 5] = [
        ("mute:", Keys::mute),
        ("ban:", Keys::ban),
        ("blocks:", Keys::blocks),
        ("history:", Keys::history),
        ("trimmed:", Keys::trimmed),
    ];
    for (kind, new) in renamed {
        for (old, id) in old_keys(conn, prefix, kind).await? {
            match conn.rename_nx::<_, _, bool>(&old, new(keys, &id)).await {
                Ok(true) => moved += 1,
                Ok(false) => tracing::warn!(key = old, "not carried over: the new key exists"),
                // Gone since the scan (expired, or moved by an upgrade that timed out).
                Err(error)
                    if error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {}
                Err(error) => return Err(error),
            }
        }
    }
    // What nodes write again on their own.
    for kind in ["presence:", "node-presence:", "node-users:", "alive:"] {
        for (old, _) in old_keys(conn, prefix, kind).await? {
            let _: i64 = conn.del(old).await?;
        }
    }
    let _: i64 = conn
        .del(&[format!("{prefix}online"), format!("{prefix}nodes")])
        .await?;
    Ok(moved)
}

/// Copies each field of the hash `old` to its own key (where that key is not set yet), then
/// deletes the hash. Returns the fields copied.
async fn split_hash(
    conn: &mut Conn,
    old: &str,
    new: impl Fn(&str) -> String,
) -> redis::RedisResult<usize> {
    let mut cursor: u64 = 0;
    let mut copied = 0;
    loop {
        let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(old)
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(conn)
            .await?;
        for (field, value) in pairs {
            let _: bool = conn.set_nx(new(&field), value).await?;
            copied += 1;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if copied > 0 {
        let _: i64 = conn.del(old).await?;
    }
    Ok(copied)
}

/// Old-layout keys `{prefix}{kind}{id}` (the id not a hash tag), with their ids.
async fn old_keys(
    conn: &mut Conn,
    prefix: &str,
    kind: &str,
) -> redis::RedisResult<Vec<(String, String)>> {
    let pattern = format!("{}{}*", glob_escape(prefix), glob_escape(kind));
    let start = prefix.len() + kind.len();
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(conn)
            .await?;
        // A key that is not UTF-8 was not written by this server. An old id starting with `{`
        // cannot be told from a new key, and stays where it is.
        for key in batch
            .into_iter()
            .filter_map(|key| String::from_utf8(key).ok())
        {
            let id = key.get(start..).unwrap_or_default().to_owned();
            if !id.starts_with('{') {
                found.push((key, id));
            }
        }
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// `text` as a literal in a SCAN MATCH pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
