//! The journal: changes queued in the order they were made, committed in groups.
//!
//! Whoever waits for a write while nobody is committing commits everything queued so far, in one
//! transaction, on its own thread (no hand-off to another thread and back: at chat rates most
//! messages commit alone, in tens of microseconds); writes queued meanwhile wait for that commit
//! to end and are committed by the next in line, together. With `--database-sync full` the
//! commit (and its fsync) runs on the blocking pool instead. The write-ahead log is folded back
//! into the database file by a thread of its own ([`Checkpointer`]), so that no request waits for
//! that.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;
use tokio::sync::Notify;

use super::Durability;
use super::schema::Meta;
use super::writer::{Write, commit};
use crate::engine::EngineError;

/// Most writes waiting to be committed; past it requests are refused with `unavailable` (the
/// disk is not keeping up) rather than queued without bound.
const QUEUE: usize = 65_536;

/// How often the write-ahead log is folded back into the database file.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);

/// Frames in the write-ahead log past which it is started over (about 16 MiB of 4 KiB pages).
const LOG_RESTART_FRAMES: i64 = 4096;

/// Where changes go. Cheap to clone; the last clone dropped commits what is still queued and
/// closes the database.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Vec<Queued>>,
    /// The connection that writes; `None` once closed.
    conn: Mutex<Option<Connection>>,
    /// Someone is committing (the next in line waits for `committed`).
    committing: AtomicBool,
    committed: Notify,
    /// The last commit succeeded (for `/healthz`).
    healthy: AtomicBool,
    /// Why the last commit failed, while commits fail.
    failure: Mutex<Option<String>>,
    durability: Durability,
    checkpointer: Mutex<Option<Checkpointer>>,
    /// Held while the database is open, so that another server does not open it too.
    lock: Mutex<Option<File>>,
    path: PathBuf,
}

/// A write and, if someone waits for it, where its outcome goes.
struct Queued {
    write: Write,
    outcome: Option<Arc<Outcome>>,
}

/// The outcome of a commit, set once.
#[derive(Default)]
struct Outcome(OnceLock<Result<(), String>>);

/// A queued write; [`committed`](Self::committed) waits for its commit.
#[must_use = "a write is durable only once committed() returns"]
pub struct Pending {
    journal: Journal,
    outcome: Arc<Outcome>,
}

impl Journal {
    /// A journal writing through `conn` to the database at `path` (held by `lock`).
    pub(super) fn start(
        conn: Connection,
        lock: File,
        path: &Path,
        durability: Durability,
    ) -> Result<Self, String> {
        let checkpointer = Checkpointer::start(path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                queue: Mutex::new(Vec::with_capacity(256)),
                conn: Mutex::new(Some(conn)),
                committing: AtomicBool::new(false),
                committed: Notify::new(),
                healthy: AtomicBool::new(true),
                failure: Mutex::new(None),
                durability,
                checkpointer: Mutex::new(Some(checkpointer)),
                lock: Mutex::new(Some(lock)),
                path: path.to_path_buf(),
            }),
        })
    }

    /// Queues a write; await [`Pending::committed`] before saying it is done. Refused while
    /// commits fail (a full disk: the change is then not made at all, rather than made on this
    /// server and lost at the next start) and when that many writes wait already. Never blocks,
    /// so it may be called under the engine's locks (to queue changes in the order they were
    /// made), before the change is made.
    pub fn write(&self, write: Write) -> Result<Pending, EngineError> {
        if !self.healthy() {
            let why = self.inner.failure.lock().clone().unwrap_or_default();
            return Err(EngineError::Unavailable(format!(
                "the database cannot store changes right now ({why}), try again shortly"
            )));
        }
        self.enqueue(write)
    }

    /// Queues a write, healthy or not.
    fn enqueue(&self, write: Write) -> Result<Pending, EngineError> {
        let outcome = Arc::new(Outcome::default());
        let mut queue = self.inner.queue.lock();
        if queue.len() >= QUEUE {
            return Err(EngineError::Unavailable(
                "the database is not keeping up with writes, try again shortly".into(),
            ));
        }
        queue.push(Queued {
            write,
            outcome: Some(outcome.clone()),
        });
        Ok(Pending {
            journal: self.clone(),
            outcome,
        })
    }

    /// Queues a write nobody waits for (history trims: the caps are applied again when the file
    /// is read back, so one dropped when the queue is full costs only space until then). It is
    /// committed with the next write, or by [`flush`](Self::flush). False when the queue was
    /// full (nothing queued).
    pub fn write_unwaited(&self, write: Write) -> bool {
        let mut queue = self.inner.queue.lock();
        let room = queue.len() < QUEUE;
        if room {
            queue.push(Queued {
                write,
                outcome: None,
            });
        }
        room
    }

    /// Commits everything queued until now, and, while commits fail, tries a commit of its own
    /// (so that `/healthz` recovers once the disk does, with no client write needed).
    pub async fn flush(&self) {
        if self.inner.queue.lock().is_empty() && self.healthy() {
            return;
        }
        // A marker behind everything queued: committed with (or after) all of it.
        let marker = Write::Meta {
            key: Meta::CheckedAt,
            value: super::super::now_ms().to_string(),
        };
        if let Ok(pending) = self.enqueue(marker) {
            let _ = pending.committed().await;
        }
    }

    /// Whether the last commit succeeded (for `/healthz`).
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Commits everything queued, unless someone else is committing (then false).
    async fn try_commit(&self) -> bool {
        if self
            .inner
            .committing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        match self.inner.durability {
            // A few writes to the page cache: done here, as a socket write would be.
            Durability::Normal => self.inner.commit_queued(),
            // An fsync: not on a runtime thread. It runs to the end even if this waiter goes.
            Durability::Full => {
                let inner = self.inner.clone();
                if tokio::task::spawn_blocking(move || inner.commit_queued())
                    .await
                    .is_err()
                {
                    tracing::error!("the database commit task failed");
                }
            }
        }
        true
    }

    /// Waits until the commit under way ends (or none is under way), unless `done` already.
    async fn wait_for_commit(&self, done: impl Fn() -> bool) {
        let notified = self.inner.committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() || !self.inner.committing.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

impl Pending {
    /// Waits until the write is committed: commits it (with everything queued before it) when
    /// nobody else is committing.
    pub async fn committed(self) -> Result<(), EngineError> {
        loop {
            if let Some(outcome) = self.outcome.0.get() {
                return outcome.clone().map_err(|error| {
                    EngineError::Unavailable(format!("the database could not store it: {error}"))
                });
            }
            if !self.journal.try_commit().await {
                self.journal
                    .wait_for_commit(|| self.outcome.0.get().is_some())
                    .await;
            }
        }
    }
}

impl Inner {
    /// Commits everything queued in one transaction, tells every waiter its outcome, and lets
    /// the next in line commit. Called by whoever set `committing`.
    fn commit_queued(&self) {
        let mut group = Group {
            inner: self,
            writes: std::mem::take(&mut *self.queue.lock()),
        };
        let group = &mut group.writes;
        if !group.is_empty() {
            let outcome = match self.conn.lock().as_ref() {
                Some(conn) => commit(conn, group.iter().map(|queued| &queued.write))
                    .map_err(|error| error.to_string()),
                None => Err("the database is closed".to_owned()),
            };
            match &outcome {
                Ok(()) => {
                    if !self.healthy.swap(true, Ordering::Relaxed) {
                        *self.failure.lock() = None;
                        tracing::info!(path = %self.path.display(), "the database accepts writes again");
                    }
                }
                Err(error) => {
                    *self.failure.lock() = Some(error.clone());
                    if self.healthy.swap(false, Ordering::Relaxed) {
                        tracing::error!(
                            path = %self.path.display(),
                            %error,
                            "cannot write to the database; changes are refused until it can"
                        );
                    }
                }
            }
            for queued in group.drain(..) {
                if let Some(waiting) = queued.outcome {
                    let _ = waiting.0.set(outcome.clone());
                }
            }
        }
    }
}

/// The group being committed. Dropped when the commit ends, normally or by a panic: it tells
/// the writes not yet told (a panic: they failed) and lets the next in line commit, so that a
/// panic can never leave every later write waiting.
struct Group<'a> {
    inner: &'a Inner,
    writes: Vec<Queued>,
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        for queued in self.writes.drain(..) {
            if let Some(waiting) = queued.outcome {
                let _ = waiting
                    .0
                    .set(Err("the database commit failed unexpectedly".into()));
            }
        }
        self.inner.committing.store(false, Ordering::Release);
        self.inner.committed.notify_waiters();
    }
}

impl Drop for Inner {
    /// The server stopped: commit what is left, fold the write-ahead log into the file (so that
    /// the file alone holds everything), close it, and only then let another server open it.
    fn drop(&mut self) {
        self.commit_queued();
        drop(self.checkpointer.lock().take());
        if let Some(conn) = self.conn.lock().take() {
            if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                tracing::warn!(%error, "could not checkpoint the database on shutdown");
            }
            drop(conn);
        }
        drop(self.lock.lock().take());
    }
}

/// A thread with a connection of its own that folds the write-ahead log back into the database
/// file every [`CHECKPOINT_PERIOD`] (SQLite's automatic checkpoint is off: it would run inside
/// some request's commit, with an fsync).
struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, String> {
        let conn = Connection::open(path).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("chat-checkpoint".into())
            .spawn(move || {
                let (stopped, wake) = &*stopping;
                let mut stopped = stopped.lock();
                while !*stopped {
                    wake.wait_for(&mut stopped, CHECKPOINT_PERIOD);
                    if let Err(error) = checkpoint(&conn) {
                        tracing::warn!(%error, "could not checkpoint the database");
                    }
                }
            })
            .map_err(|e| format!("cannot start its checkpoint thread: {e}"))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

/// Folds the log back without holding up writers (PASSIVE). Commits made while it ran stay in
/// the log, so under steady traffic the log would never start over and would grow: past
/// [`LOG_RESTART_FRAMES`] it is folded back once more and started over (RESTART), which holds
/// up commits for that moment (the pages changed since the last checkpoint: few, at chat rates).
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    let (_busy, log_frames, _done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    if log_frames > LOG_RESTART_FRAMES {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
