//! The writer: one thread owns the database connection and commits in groups. Everything queued
//! while it committed the last group goes into the next transaction, so that a commit's cost is
//! shared by every write that waited for it, and each writer hears back once its write is
//! committed (a chat message is acknowledged only then).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use protocol::{ChatMessage, MessageId};
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use super::schema::{Meta, set_meta, until_to_sql};
use crate::identity::guests::SecretHash;
use crate::moderation::Standing;

/// Most writes committed in one transaction (a longer queue waits for the next).
const MAX_GROUP: usize = 4096;

/// One change to the database.
#[derive(Debug, Clone)]
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
    /// A new guest account.
    Guest {
        /// The guest's user id.
        user_id: String,
        /// Hash of the guest's secret.
        secret: SecretHash,
    },
}

/// A write and who waits for its commit.
pub struct Queued {
    /// The change.
    pub write: Write,
    /// Told the outcome once the group is committed (none: nobody waits).
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Commits what arrives on `queue` until every sender is gone. `healthy` is false while
/// commits fail (for `/healthz`).
pub fn run(mut conn: Connection, mut queue: mpsc::Receiver<Queued>, healthy: Arc<AtomicBool>) {
    let mut group: Vec<Queued> = Vec::with_capacity(256);
    while let Some(first) = queue.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let outcome = commit(&mut conn, &group).map_err(|e| e.to_string());
        match &outcome {
            Ok(()) => {
                if !healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("the database accepts writes again");
                }
            }
            Err(error) => {
                if healthy.swap(false, Ordering::Relaxed) {
                    tracing::error!(%error, "cannot write to the database; writes fail until it can");
                }
            }
        }
        for queued in group.drain(..) {
            if let Some(done) = queued.done {
                let _ = done.send(outcome.clone());
            }
        }
    }
    // Every handle is gone (the server stopped): fold the write-ahead log into the database so
    // that the file alone holds everything.
    if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%error, "could not checkpoint the database on shutdown");
    }
}

/// Applies a group in one transaction.
fn commit(conn: &mut Connection, group: &[Queued]) -> rusqlite::Result<()> {
    let transaction = conn.transaction()?;
    for queued in group {
        apply(&transaction, &queued.write)?;
    }
    transaction.commit()
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
        Write::Name { user_id, name } => {
            conn.prepare_cached("INSERT OR REPLACE INTO names (user_id, name) VALUES (?1, ?2)")?
                .execute([user_id, name])?;
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
            let mut insert =
                conn.prepare_cached("INSERT INTO blocks (user_id, target) VALUES (?1, ?2)")?;
            for target in users {
                insert.execute([user_id, target])?;
            }
            set_meta(conn, Meta::BlocksVersion, &version.to_string())?;
        }
        Write::Meta { key, value } => set_meta(conn, *key, value)?,
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
