//! The changes the database keeps ([`Write`]), and how a group of them is committed.

use std::sync::Arc;

use protocol::{ChatMessage, MessageId};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::schema::{Meta, set_meta, until_to_sql};
use crate::engine::NAMES_KEPT;
use crate::engine::audit::AuditEntry;
use crate::identity::guests::SecretHash;
use crate::moderation::Standing;

/// One change to the database (as written to the redo log: JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Write {
    /// A chat message was published.
    Message(Arc<ChatMessage>),
    /// History of `channel` up to and including `through` was dropped (by a cap).
    Trim {
        /// The channel.
        channel: Arc<str>,
        /// Id of the newest message dropped.
        through: MessageId,
    },
    /// A channel's history was forgotten altogether (the channel cap).
    Forget {
        /// The channel.
        channel: Arc<str>,
    },
    /// A user's display name.
    Name {
        /// The user.
        user_id: String,
        /// The name.
        name: String,
        /// When it was set (ms since the Unix epoch; 0: not recorded in the name history).
        #[serde(default)]
        at_ms: u64,
    },
    /// A user's mute and ban as they are now (both absent: the row goes).
    Standing {
        /// The user.
        user_id: String,
        /// Mute and ban.
        standing: Standing,
    },
    /// A user's block list as it is now.
    Blocks {
        /// The blocking user.
        user_id: String,
        /// Every user blocked.
        users: Vec<String>,
        /// Version of this change (of all lists).
        version: u64,
    },
    /// A `meta` value.
    Meta {
        /// Which.
        key: Meta,
        /// Its value.
        value: String,
    },
    /// An admin action, for the audit log.
    Audit(Box<AuditEntry>),
    /// A new guest account.
    Guest {
        /// The guest's user id.
        user_id: String,
        /// Hash of the guest's secret.
        #[serde(with = "secret_hex")]
        secret: SecretHash,
    },
}

/// Applies `writes` in one transaction (statements prepared once, not parsed per commit).
pub fn commit<'a>(
    conn: &Connection,
    writes: impl Iterator<Item = &'a Write>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let mut applied = Ok(());
    for write in writes {
        applied = apply(conn, write);
        if applied.is_err() {
            break;
        }
    }
    let ended = applied.and_then(|()| conn.prepare_cached("COMMIT")?.execute([]).map(drop));
    if ended.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    ended
}

fn apply(conn: &Connection, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Message(message) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO messages (channel, ms, seq, user_id, username, message) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                message.channel,
                message.id.ms as i64,
                message.id.seq as i64,
                message.user_id,
                message.username,
                message.message,
            ])?;
        }
        Write::Trim { channel, through } => {
            let (ms, seq) = (through.ms as i64, through.seq as i64);
            conn.prepare_cached(
                "DELETE FROM messages WHERE channel = ?1 AND (ms < ?2 OR (ms = ?2 AND seq <= ?3))",
            )?
            .execute(params![&**channel, ms, seq])?;
            conn.prepare_cached(
                "INSERT INTO channels (name, trimmed_ms, trimmed_seq) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET trimmed_ms = ?2, trimmed_seq = ?3 \
                 WHERE trimmed_ms < ?2 OR (trimmed_ms = ?2 AND trimmed_seq < ?3)",
            )?
            .execute(params![&**channel, ms, seq])?;
        }
        Write::Forget { channel } => {
            conn.prepare_cached("DELETE FROM messages WHERE channel = ?1")?
                .execute([&**channel])?;
            conn.prepare_cached("DELETE FROM channels WHERE name = ?1")?
                .execute([&**channel])?;
        }
        Write::Name {
            user_id,
            name,
            at_ms,
        } => {
            conn.prepare_cached("INSERT OR REPLACE INTO names (user_id, name) VALUES (?1, ?2)")?
                .execute([user_id, name])?;
            if *at_ms > 0 {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO name_history (user_id, ms, name) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![user_id, *at_ms as i64, name])?;
                conn.prepare_cached(
                    "DELETE FROM name_history WHERE user_id = ?1 AND ms NOT IN \
                     (SELECT ms FROM name_history WHERE user_id = ?1 ORDER BY ms DESC LIMIT ?2)",
                )?
                .execute(params![user_id, NAMES_KEPT as i64])?;
            }
        }
        Write::Standing { user_id, standing } => {
            if *standing == Standing::default() {
                conn.prepare_cached("DELETE FROM standings WHERE user_id = ?1")?
                    .execute([user_id])?;
            } else {
                let (muted_until, mute_reason) = split(&standing.muted);
                let (banned_until, ban_reason) = split(&standing.banned);
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO standings \
                     (user_id, muted_until, mute_reason, banned_until, ban_reason) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    user_id,
                    muted_until,
                    mute_reason,
                    banned_until,
                    ban_reason
                ])?;
            }
        }
        Write::Blocks {
            user_id,
            users,
            version,
        } => {
            conn.prepare_cached("DELETE FROM blocks WHERE user_id = ?1")?
                .execute([user_id])?;
            let mut insert = conn
                .prepare_cached("INSERT OR IGNORE INTO blocks (user_id, target) VALUES (?1, ?2)")?;
            for target in users {
                insert.execute([user_id, target])?;
            }
            set_meta(conn, Meta::BlocksVersion, &version.to_string())?;
        }
        Write::Meta { key, value } => set_meta(conn, *key, value)?,
        Write::Audit(entry) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO audit \
                 (ms, seq, ts, action, target, reason, seconds, result, address, via) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                entry.id.ms as i64,
                entry.id.seq as i64,
                entry.ts as i64,
                entry.action.as_str(),
                entry.target,
                entry.reason,
                entry.seconds.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
                entry.result,
                entry.address,
                entry.via,
            ])?;
        }
        Write::Guest { user_id, secret } => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO guests (user_id, secret_sha256) VALUES (?1, ?2)",
            )?
            .execute([user_id, &secret.to_hex()])?;
        }
    }
    Ok(())
}

/// An optional `(until, reason)` as two columns.
fn split(sanction: &Option<(u64, String)>) -> (Option<i64>, Option<&str>) {
    match sanction {
        Some((until, reason)) => (Some(until_to_sql(*until)), Some(reason.as_str())),
        None => (None, None),
    }
}

/// A secret hash in the redo log: its hex digits.
mod secret_hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::identity::guests::SecretHash;

    pub fn serialize<S: Serializer>(hash: &SecretHash, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_str(&hash.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<SecretHash, D::Error> {
        let hex = <&str>::deserialize(from)?;
        SecretHash::from_hex(hex).ok_or_else(|| D::Error::custom("not a SHA-256 in hex"))
    }
}
