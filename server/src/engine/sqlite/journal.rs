//! The journal: changes queued in the order they were made, committed in groups.
//!
//! Whoever waits for a write while nobody is committing commits everything queued so far, as
//! one record appended to the redo log (`redo.rs`), on its own thread (no hand-off to another
//! thread and back: at chat rates most messages commit alone, in a few microseconds); writes
//! queued meanwhile wait for that commit to end and are committed by the next in line,
//! together. With `--database-sync full` the commit (and its fsync) runs on the blocking pool
//! instead. The absorber (`absorb.rs`) folds the log into SQLite about once a second, on a
//! thread of its own, so that no request waits for SQLite.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Notify;

use super::Durability;
use super::absorb::Absorber;
use super::health::{Health, Stage};
use super::redo::RedoLog;
use super::schema::Meta;
use super::writer::Write;
use crate::engine::EngineError;

/// Most writes waiting to be committed; past it requests are refused with `unavailable` (the
/// disk is not keeping up) rather than queued without bound.
const QUEUE: usize = 65_536;

/// Where changes go. Cheap to clone; the last clone dropped commits what is still queued and
/// closes the database.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Vec<Queued>>,
    /// The queue's previous buffer, kept for the next swap (so that no push reallocates).
    spare: Mutex<Vec<Queued>>,
    /// Where commits go; shared with the absorber.
    log: Arc<Mutex<RedoLog>>,
    /// Someone is committing (the next in line waits for `committed`).
    committing: AtomicBool,
    committed: Notify,
    health: Arc<Health>,
    durability: Durability,
    absorber: Mutex<Option<Absorber>>,
    /// Held while the database is open, so that another server does not open it too.
    lock: Mutex<Option<File>>,
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
    /// A journal committing to `log`, folded into the database behind `conn` (at `path`, held
    /// by `lock`).
    pub(super) fn start(
        conn: Connection,
        log: RedoLog,
        lock: File,
        path: &Path,
        durability: Durability,
    ) -> Result<Self, String> {
        let log = Arc::new(Mutex::new(log));
        let health = Arc::new(Health::new(path.to_path_buf()));
        let absorber = Absorber::start(conn, log.clone(), health.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                queue: Mutex::new(Vec::with_capacity(256)),
                spare: Mutex::new(Vec::with_capacity(256)),
                log,
                committing: AtomicBool::new(false),
                committed: Notify::new(),
                health,
                durability,
                absorber: Mutex::new(Some(absorber)),
                lock: Mutex::new(Some(lock)),
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
            let why = self.inner.health.reason();
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

    /// Commits what is queued and folds everything committed into the file, now (tests read
    /// the file).
    #[cfg(test)]
    pub async fn fold_now(&self) {
        self.flush().await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(absorber) = inner.absorber.lock().as_ref() {
                absorber.fold_now();
            }
        })
        .await
        .unwrap();
    }

    /// Whether the last commit succeeded (for `/healthz`).
    pub fn healthy(&self) -> bool {
        self.inner.health.healthy()
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
            // One write to the page cache: done here, as a socket write would be.
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
    /// Commits everything queued as one record of the redo log, tells every waiter its outcome,
    /// and lets the next in line commit. Called by whoever set `committing`.
    fn commit_queued(&self) {
        let writes = {
            let mut spare = self.spare.lock();
            let mut queue = self.queue.lock();
            std::mem::replace(&mut *queue, std::mem::take(&mut *spare))
        };
        let mut group = Group {
            inner: self,
            writes,
        };
        if group.writes.is_empty() {
            return;
        }
        let mut log = self.log.lock();
        let appended = log.append(group.writes.iter().map(|queued| &queued.write));
        let outcome = appended.map_err(|error| error.to_string());
        self.health.record(
            Stage::Log,
            outcome.as_ref().map(drop).map_err(String::as_str),
        );
        for queued in group.writes.drain(..) {
            if outcome.is_ok() {
                log.keep(queued.write);
            }
            if let Some(waiting) = queued.outcome {
                let _ = waiting.0.set(outcome.clone());
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
        *self.inner.spare.lock() = std::mem::take(&mut self.writes);
        self.inner.committing.store(false, Ordering::Release);
        self.inner.committed.notify_waiters();
    }
}

impl Drop for Inner {
    /// The server stopped: commit what is left, let the absorber fold everything into the file
    /// (so that the file alone holds it all) and close it, and only then let another server
    /// open it.
    fn drop(&mut self) {
        self.commit_queued();
        drop(self.absorber.lock().take());
        drop(self.lock.lock().take());
    }
}
