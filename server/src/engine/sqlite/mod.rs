//! The embedded database: SQLite (compiled in), one file, in WAL mode, and its redo log.
//!
//! It keeps what the single-node engine must not lose in a restart: channel history, names,
//! mutes and bans, block lists and guest accounts. The engine keeps serving from memory (reads
//! never touch the file); every change is queued to the [`Journal`], which commits in groups to
//! the redo log (two files beside the database, folded into it every second), and a request is
//! answered only once its change is committed. On start the log is folded in and the file read
//! back ([`Database::open`]) into the engine.

mod absorb;
mod backup;
mod guests;
mod health;
mod journal;
mod load;
mod redo;
mod schema;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::engine::audit::AUDIT_KEPT;
use rusqlite::{Connection, OpenFlags};

pub use backup::backup;
pub use guests::SqliteGuestStore;
pub use journal::{Journal, Pending};
pub use load::{ChannelSnapshot, HistoryCaps, Snapshot};
pub use schema::Meta;
pub use writer::Write;

/// How hard a commit tries to reach the disk (SQLite's `synchronous` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// Committed data survives a crash of the server process; a power loss or an operating
    /// system crash can take the last commits (SQLite `synchronous=NORMAL` in WAL mode).
    Normal,
    /// Every commit is flushed to the disk before it is acknowledged, so it survives a power
    /// loss too (`synchronous=FULL`), at the cost of an fsync per group.
    Full,
}

/// The open database: where changes go, and what it held when opened.
pub struct Database {
    /// Where changes go.
    pub journal: Journal,
    /// What the file held.
    pub snapshot: Snapshot,
}

impl Database {
    /// Opens (creating it and its directory) the database at `path`, checks it, and reads it
    /// back within `caps`. Refuses (with the reason) a file that is not a database, is damaged,
    /// cannot be written, is of a newer schema, or is in use by another server.
    pub fn open(path: &Path, durability: Durability, caps: HistoryCaps) -> Result<Self, String> {
        let describe =
            |error: String| format!("cannot use the database {}: {error}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| describe(format!("cannot create {}: {e}", dir.display())))?;
        }
        // First the lock, so that a second opener never opens a connection to the file.
        let lock = hold_exclusively(path).map_err(describe)?;
        let created = !path.exists();
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| describe(e.to_string()))?;
        #[cfg(unix)]
        if created {
            // It holds guests' secret hashes: the server's user only (as the key file).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| describe(format!("cannot restrict its mode to 0600: {e}")))?;
        }
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Err(describe(
                "the file cannot be written (check its owner and mode)".into(),
            ));
        }
        configure(&mut conn, durability).map_err(describe)?;
        check(&conn).map_err(describe)?;
        schema::prepare(&mut conn).map_err(describe)?;
        let log = absorb::fold_at_start(&conn, path, durability).map_err(describe)?;
        let snapshot = load::snapshot(&conn, caps).map_err(|e| describe(e.to_string()))?;
        if snapshot.audit.len() >= AUDIT_KEPT
            && let Some(oldest) = snapshot.audit.first()
        {
            // The audit log keeps its newest entries: older ones go from the file too.
            conn.execute(
                "DELETE FROM audit WHERE ms < ?1 OR (ms = ?1 AND seq < ?2)",
                [oldest.id.ms as i64, oldest.id.seq as i64],
            )
            .map_err(|e| describe(e.to_string()))?;
        }
        tracing::info!(
            path = %path.display(),
            created,
            durability = ?durability,
            channels = snapshot.channels.len(),
            messages = snapshot.channels.iter().map(|c| c.messages.len()).sum::<usize>(),
            names = snapshot.names.len(),
            sanctions = snapshot.standings.len(),
            guests = snapshot.guests.len(),
            "database opened"
        );
        let journal = Journal::start(conn, log, lock, path, durability).map_err(describe)?;
        Ok(Self { journal, snapshot })
    }
}

/// The lock file beside the database (`chat.db.lock`).
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes a lock that another chat-server opening the database will find (SQLite itself lets two
/// processes share a file; two servers each serving from their own memory must not). It is on a
/// file of its own: closing a second descriptor of the database file itself would drop the
/// POSIX locks SQLite holds on it.
fn hold_exclusively(path: &Path) -> Result<File, String> {
    let lock = lock_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(&lock)
        .map_err(|e| format!("cannot open its lock file {}: {e}", lock.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(
            "another chat-server is using it (one server per database file; give each its own \
             --database, or use the Redis engine to run several nodes)"
                .into(),
        ),
        Err(std::fs::TryLockError::Error(error)) => Err(format!("cannot lock it: {error}")),
    }
}

fn configure(conn: &mut Connection, durability: Durability) -> Result<(), String> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "SQLite would not switch it to WAL mode (it stays in {mode:?} mode)"
        ));
    }
    let synchronous = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(|e| e.to_string())?;
    // The absorber (absorb.rs) checkpoints after each fold, on its own thread.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| e.to_string())?;
    // Readers (a backup, the sqlite3 shell) hold up only a checkpoint that starts the log over,
    // at start and on shutdown: wait for them that long at most.
    conn.busy_timeout(BUSY_WAIT).map_err(|e| e.to_string())
}

/// Longest the database waits for a reader to let it start its log over.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// SQLite's own check of the file's structure (`PRAGMA quick_check`): a damaged file is
/// refused, never served as if it were empty.
fn check(conn: &Connection) -> Result<(), String> {
    let mut statement = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| e.to_string())?;
    let problems: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .map_err(|e| e.to_string())?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| e.to_string())?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(format!(
            "it is damaged (SQLite's quick_check: {}); restore a backup (`chat-server backup`) \
             or move the file away to start empty",
            problems.join("; ")
        )),
    }
}

#[cfg(test)]
mod tests;
