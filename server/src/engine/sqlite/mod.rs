//! The embedded database: SQLite (compiled in), one file, in WAL mode.
//!
//! It keeps what the single-node engine must not lose in a restart: channel history, names,
//! mutes and bans, block lists and guest accounts. The engine keeps serving from memory (reads
//! never touch the file); every change is queued to a writer thread ([`Journal`]) that commits
//! in groups, and a request is answered only once its change is committed. On start the file
//! is read back ([`Database::open`]) into the engine.

mod backup;
mod guests;
mod load;
mod schema;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use clap::ValueEnum;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

pub use backup::backup;
pub use guests::SqliteGuestStore;
pub use load::{ChannelSnapshot, HistoryCaps, Snapshot};
pub use schema::Meta;
pub use writer::Write;

use super::EngineError;
use writer::Queued;

/// Most writes waiting for the writer; past it requests are refused with `unavailable` (the
/// disk is not keeping up) rather than queued without bound.
const QUEUE: usize = 65_536;

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

/// The open database: its writer, and what it held when opened.
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
        let created = !path.exists();
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| describe(e.to_string()))?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Err(describe(
                "the file cannot be written (check its owner and mode)".into(),
            ));
        }
        let lock = hold_exclusively(path).map_err(describe)?;
        configure(&conn, durability).map_err(describe)?;
        check(&conn).map_err(describe)?;
        schema::prepare(&mut conn).map_err(describe)?;
        let snapshot = load::snapshot(&conn, caps).map_err(|e| describe(e.to_string()))?;
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
        let journal = Journal::start(conn, lock, path.to_path_buf()).map_err(describe)?;
        Ok(Self { journal, snapshot })
    }
}

/// Takes a lock on the file that another chat-server opening it will find (SQLite itself lets
/// two processes share a file; two servers each serving from their own memory must not).
fn hold_exclusively(path: &Path) -> Result<File, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
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

fn configure(conn: &Connection, durability: Durability) -> Result<(), String> {
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
    // A backup reading the file holds its read lock briefly; wait rather than fail a commit.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())
}

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

/// Where changes go: a handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    queue: mpsc::Sender<Queued>,
    owner: Arc<WriterThread>,
}

/// The writer thread; joined (after it committed what was queued) when the last handle goes.
struct WriterThread {
    healthy: Arc<AtomicBool>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        // Every sender is gone with the handles; the thread ends once the queue is empty.
        if let Some(thread) = self.thread.lock().take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the database writer panicked");
        }
    }
}

/// A queued write; [`committed`](Self::committed) waits for its commit.
#[must_use = "a write is durable only once committed() returns"]
pub struct Pending(oneshot::Receiver<Result<(), String>>);

impl Pending {
    /// Waits until the write is committed.
    pub async fn committed(self) -> Result<(), EngineError> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(EngineError::Unavailable(format!(
                "the database could not store it: {error}"
            ))),
            Err(_) => Err(EngineError::Unavailable(
                "the database writer stopped".into(),
            )),
        }
    }
}

impl Journal {
    fn start(conn: Connection, lock: File, path: PathBuf) -> Result<Self, String> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let healthy = Arc::new(AtomicBool::new(true));
        let thread_healthy = healthy.clone();
        let thread = std::thread::Builder::new()
            .name("chat-database".into())
            .spawn(move || {
                writer::run(conn, receiver, thread_healthy);
                // The lock goes only after the connection closed.
                drop(lock);
            })
            .map_err(|e| format!("cannot start its writer thread: {e}"))?;
        Ok(Self {
            queue,
            owner: Arc::new(WriterThread {
                healthy,
                thread: parking_lot::Mutex::new(Some(thread)),
                path,
            }),
        })
    }

    /// Queues a write; await [`Pending::committed`] before saying it is done. Refused when the
    /// writer is that far behind ([`QUEUE`]) or stopped. Never blocks, so it may be called
    /// under the engine's locks (to queue in the order the changes were made).
    pub fn write(&self, write: Write) -> Result<Pending, EngineError> {
        let (done, pending) = oneshot::channel();
        self.queue
            .try_send(Queued {
                write,
                done: Some(done),
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => EngineError::Unavailable(
                    "the database is not keeping up with writes, try again shortly".into(),
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    EngineError::Unavailable("the database writer stopped".into())
                }
            })?;
        Ok(Pending(pending))
    }

    /// Queues a write nobody waits for (history trims: the caps are applied again when the
    /// file is read back, so one lost when the queue is full costs only space until then).
    pub fn write_unwaited(&self, write: Write) {
        let _ = self.queue.try_send(Queued { write, done: None });
    }

    /// Whether the last commit succeeded (for `/healthz`).
    pub fn healthy(&self) -> bool {
        self.owner.healthy.load(Ordering::Relaxed)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.owner.path
    }
}

#[cfg(test)]
mod tests;
