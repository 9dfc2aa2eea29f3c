//! The database's tables, created (or checked) when the server opens it.
//!
//! Every table is `WITHOUT ROWID` on its natural key, so that a row is one B-tree entry and an
//! operator reading the file with the `sqlite3` shell sees plain, self-explaining rows.

use rusqlite::{Connection, OptionalExtension};

/// The schema version this build writes (`PRAGMA user_version`). New tables alone (the audit
/// log, the name history) keep the version: an older server still opens the file (and leaves
/// them be), so that rolling back needs no restore.
pub const VERSION: i64 = 1;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS messages (
    channel  TEXT    NOT NULL,
    ms       INTEGER NOT NULL,  -- id, first part: Unix ms when the server accepted it
    seq      INTEGER NOT NULL,  -- id, second part: order within that millisecond
    user_id  TEXT    NOT NULL,
    username TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    PRIMARY KEY (channel, ms, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels (
    name        TEXT    PRIMARY KEY,
    trimmed_ms  INTEGER NOT NULL,  -- id of the newest message dropped from history:
    trimmed_seq INTEGER NOT NULL   -- a `since` resume from before it is told `gap`
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (
    user_id TEXT PRIMARY KEY,
    name    TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS name_history (
    user_id TEXT    NOT NULL,
    ms      INTEGER NOT NULL,  -- Unix ms when the name was set
    name    TEXT    NOT NULL,
    PRIMARY KEY (user_id, ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS standings (
    user_id      TEXT PRIMARY KEY,
    muted_until  INTEGER,  -- Unix ms; NULL when not muted
    mute_reason  TEXT,
    banned_until INTEGER,  -- Unix ms; NULL when not banned
    ban_reason   TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    user_id TEXT NOT NULL,
    target  TEXT NOT NULL,
    PRIMARY KEY (user_id, target)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS guests (
    user_id       TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL  -- hex SHA-256 of the guest's secret
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    ms      INTEGER NOT NULL,  -- id, first part (Unix ms)
    seq     INTEGER NOT NULL,  -- id, second part
    ts      INTEGER NOT NULL,  -- Unix ms when it was done
    action  TEXT    NOT NULL,  -- mute, unmute, kick, ban, unban, broadcast
    target  TEXT    NOT NULL,  -- user id, #channel or * (everyone)
    reason  TEXT,
    seconds INTEGER,           -- length of a mute or ban; NULL: until lifted
    result  TEXT    NOT NULL,  -- ok, or why it failed
    address TEXT    NOT NULL,  -- the operator's address
    via     TEXT    NOT NULL,  -- console or api
    PRIMARY KEY (ms, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Keys of the `meta` table.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meta {
    /// Version of the newest block-list change (block lists are versioned as a whole).
    BlocksVersion,
    /// The guest file whose accounts were imported (so that it is imported once).
    GuestsImportedFrom,
    /// When the server last committed a check of its own (a flush with nothing else queued,
    /// or a probe while commits failed).
    CheckedAt,
    /// Sequence number of the newest redo log record folded into the file.
    RedoThrough,
    /// A random number this file was given when created (or copied by a backup), written in
    /// every record of its redo log: records of another file are never applied to it.
    RedoEpoch,
}

impl Meta {
    /// The key as stored.
    pub fn key(self) -> &'static str {
        match self {
            Meta::BlocksVersion => "blocks_version",
            Meta::GuestsImportedFrom => "guests_imported_from",
            Meta::CheckedAt => "checked_at",
            Meta::RedoThrough => "redo_through",
            Meta::RedoEpoch => "redo_epoch",
        }
    }
}

/// Creates the tables of a new database, or checks that an existing one is of a version this
/// build understands. Runs in a write transaction, so that a file that cannot be written is
/// found out now rather than on the first message.
pub fn prepare(conn: &mut Connection) -> Result<(), String> {
    let transaction = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let version: i64 = transaction
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if version > VERSION {
        return Err(format!(
            "it was written by a newer chat-server (schema version {version}, this build knows \
             {VERSION}); run that version, or restore a backup"
        ));
    }
    transaction
        .execute_batch(TABLES)
        .map_err(|e| e.to_string())?;
    transaction
        .pragma_update(None, "user_version", VERSION)
        .map_err(|e| e.to_string())?;
    transaction.commit().map_err(|e| e.to_string())
}

/// Reads a `meta` value.
pub fn meta(conn: &Connection, key: Meta) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = ?1",
        [key.key()],
        |row| row.get(0),
    )
    .optional()
}

/// Reads a `meta` value that is a number.
pub fn meta_number(conn: &Connection, key: Meta) -> Result<Option<u64>, String> {
    let value = meta(conn, key).map_err(|e| e.to_string())?;
    value
        .map(|v| {
            v.parse()
                .map_err(|_| format!("its meta {} {v:?} is not a number", key.key()))
        })
        .transpose()
}

/// Writes a `meta` value.
pub fn set_meta(conn: &Connection, key: Meta, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute([key.key(), value])
        .map(drop)
}

/// The end of a mute or ban as stored: `u64::MAX` ("until lifted") is SQLite's largest integer.
pub fn until_to_sql(until_ms: u64) -> i64 {
    i64::try_from(until_ms).unwrap_or(i64::MAX)
}

/// The end of a mute or ban as read back.
pub fn until_from_sql(stored: i64) -> u64 {
    if stored == i64::MAX {
        u64::MAX
    } else {
        u64::try_from(stored).unwrap_or(0)
    }
}
