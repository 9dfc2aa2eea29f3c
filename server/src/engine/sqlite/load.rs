//! Reading the database back on start: what the engine held when the server stopped.

use std::collections::HashMap;

use protocol::{ChatMessage, MessageId};
use rusqlite::Connection;

use super::schema::{Meta, meta, until_from_sql};
use crate::engine::audit::{AUDIT_KEPT, AuditAction, AuditEntry};
use crate::identity::guests::SecretHash;
use crate::moderation::Standing;

/// Which history to read back: the caps the engine keeps by.
#[derive(Debug, Clone, Copy)]
pub struct HistoryCaps {
    /// Most messages per channel.
    pub per_channel: usize,
    /// Messages accepted before this (Unix ms) are not read back.
    pub oldest_ms: u64,
}

/// One channel's kept history.
#[derive(Debug, Default)]
pub struct ChannelSnapshot {
    /// The channel.
    pub name: String,
    /// Messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Id of the newest message dropped from history (stored, or left behind now by the caps).
    pub trimmed_through: Option<MessageId>,
}

/// Everything the engine keeps, as read from the database.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Channels with history (or with a record of dropped history).
    pub channels: Vec<ChannelSnapshot>,
    /// User id → display name.
    pub names: Vec<(String, String)>,
    /// User id → its last names, newest first, with when each was set.
    pub name_history: HashMap<String, Vec<(String, u64)>>,
    /// Users with a mute or a ban (expired ones included: the engine treats them as ended).
    pub standings: Vec<(String, Standing)>,
    /// User id → users blocked.
    pub blocks: HashMap<String, Vec<String>>,
    /// Version of the newest block-list change.
    pub blocks_version: u64,
    /// Guest accounts.
    pub guests: HashMap<String, SecretHash>,
    /// The guest file whose accounts were imported, if one was.
    pub guests_imported_from: Option<String>,
    /// The newest entries of the audit log, oldest first.
    pub audit: Vec<AuditEntry>,
}

/// Reads everything back.
pub fn snapshot(conn: &Connection, caps: HistoryCaps) -> rusqlite::Result<Snapshot> {
    let mut snapshot = Snapshot {
        channels: channels(conn, caps)?,
        ..Snapshot::default()
    };
    let mut names = conn.prepare("SELECT user_id, name FROM names")?;
    snapshot.names = names
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut standings = conn.prepare(
        "SELECT user_id, muted_until, mute_reason, banned_until, ban_reason FROM standings",
    )?;
    snapshot.standings = standings
        .query_map([], |row| {
            let sanction = |until: Option<i64>, reason: Option<String>| {
                until.map(|until| (until_from_sql(until), reason.unwrap_or_default()))
            };
            Ok((
                row.get(0)?,
                Standing {
                    muted: sanction(row.get(1)?, row.get(2)?),
                    banned: sanction(row.get(3)?, row.get(4)?),
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut blocks = conn.prepare("SELECT user_id, target FROM blocks ORDER BY user_id, target")?;
    for row in blocks.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))? {
        let (user, target): (String, String) = row?;
        snapshot.blocks.entry(user).or_default().push(target);
    }
    snapshot.blocks_version = meta(conn, Meta::BlocksVersion)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    snapshot.guests_imported_from = meta(conn, Meta::GuestsImportedFrom)?;
    let mut guests = conn.prepare("SELECT user_id, secret_sha256 FROM guests")?;
    for row in guests.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))? {
        let (user_id, hex): (String, String) = row?;
        match SecretHash::from_hex(&hex) {
            Some(hash) => {
                snapshot.guests.insert(user_id, hash);
            }
            None => tracing::warn!(
                user_id,
                "skipping a guest whose stored secret hash is not 64 hex digits"
            ),
        }
    }
    snapshot.audit = audit(conn)?;
    let mut history =
        conn.prepare("SELECT user_id, name, ms FROM name_history ORDER BY user_id, ms DESC")?;
    for row in history.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })? {
        let (user_id, name, ms) = row?;
        snapshot
            .name_history
            .entry(user_id)
            .or_default()
            .push((name, ms as u64));
    }
    Ok(snapshot)
}

/// The newest [`AUDIT_KEPT`] entries of the audit log, oldest first.
fn audit(conn: &Connection) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut newest = conn.prepare(
        "SELECT ms, seq, ts, action, target, reason, seconds, result, address, via \
         FROM audit ORDER BY ms DESC, seq DESC LIMIT ?1",
    )?;
    let mut entries = Vec::new();
    let rows = newest.query_map([AUDIT_KEPT as i64], |row| {
        Ok((
            MessageId::new(row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64),
            row.get::<_, i64>(2)? as u64,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, Option<String>>(5)?,
            row.get::<_, Option<i64>>(6)?,
            (row.get(7)?, row.get(8)?, row.get(9)?),
        ))
    })?;
    for row in rows {
        let (id, ts, action, target, reason, seconds, (result, address, via)) = row?;
        let Some(action) = AuditAction::parse(&action) else {
            tracing::warn!(%id, action, "skipping an audit entry of an unknown action");
            continue;
        };
        entries.push(AuditEntry {
            id,
            ts,
            action,
            target,
            reason,
            seconds: seconds.map(|s| s as u64),
            result,
            address,
            via,
        });
    }
    entries.reverse();
    Ok(entries)
}

/// Every channel's newest messages within `caps`.
fn channels(conn: &Connection, caps: HistoryCaps) -> rusqlite::Result<Vec<ChannelSnapshot>> {
    let mut names = conn.prepare(
        "SELECT name, trimmed_ms, trimmed_seq FROM channels \
         UNION ALL SELECT DISTINCT channel, NULL, NULL FROM messages \
         WHERE channel NOT IN (SELECT name FROM channels)",
    )?;
    let listed: Vec<(String, Option<i64>, Option<i64>)> = names
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut newest = conn.prepare(
        "SELECT ms, seq, user_id, username, message FROM messages WHERE channel = ?1 \
         ORDER BY ms DESC, seq DESC LIMIT ?2",
    )?;
    let mut channels = Vec::with_capacity(listed.len());
    for (name, trimmed_ms, trimmed_seq) in listed {
        let mut trimmed_through = match (trimmed_ms, trimmed_seq) {
            (Some(ms), Some(seq)) => Some(MessageId::new(ms as u64, seq as u64)),
            _ => None,
        };
        // One more than is kept: if it exists, it is the newest message the cap drops.
        let limit = caps.per_channel.saturating_add(1).min(i64::MAX as usize) as i64;
        let mut messages = Vec::new();
        let rows = newest.query_map(rusqlite::params![name, limit], |row| {
            let id = MessageId::new(row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64);
            Ok(ChatMessage {
                channel: name.clone(),
                id,
                ts: id.ms,
                user_id: row.get(2)?,
                username: row.get(3)?,
                message: row.get(4)?,
            })
        })?;
        for message in rows {
            let message = message?;
            if messages.len() == caps.per_channel || message.id.ms < caps.oldest_ms {
                // Newest first: the first one not kept is the newest dropped.
                trimmed_through = trimmed_through.max(Some(message.id));
                break;
            }
            messages.push(message);
        }
        messages.reverse();
        if messages.is_empty() && trimmed_through.is_none() {
            continue;
        }
        channels.push(ChannelSnapshot {
            name,
            messages,
            trimmed_through,
        });
    }
    Ok(channels)
}
