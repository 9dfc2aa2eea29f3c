//! The absorber: a thread that folds the redo log into the SQLite file about once a second,
//! everything committed since the last fold in one transaction, and empties what it folded.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use super::health::{Health, Stage};
use super::redo::{Batch, RedoLog, empty_segment};
use super::schema::Meta;
use super::writer::{Write, commit};

/// How often the redo log is folded into SQLite.
const PERIOD: Duration = Duration::from_secs(1);

/// The running absorber; dropping it folds in what is left and stops it.
pub struct Absorber {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Absorber {
    /// Starts folding `log` into the database behind `conn` (its only writer from now on).
    pub fn start(
        conn: Connection,
        log: Arc<Mutex<RedoLog>>,
        health: Arc<Health>,
    ) -> Result<Self, String> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("chat-absorb".into())
            .spawn(move || {
                let (stopped, wake) = &*stopping;
                loop {
                    let stopping = {
                        let mut stopped = stopped.lock();
                        if !*stopped {
                            wake.wait_for(&mut stopped, PERIOD);
                        }
                        *stopped
                    };
                    // A last round when stopping: everything is folded in before closing.
                    round(&conn, &log, &health);
                    if stopping {
                        break;
                    }
                }
                close(conn, &log);
            })
            .map_err(|e| format!("cannot start its absorber thread: {e}"))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Absorber {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Folds in what was committed since the last round, then empties the log file it came from.
fn round(conn: &Connection, log: &Mutex<RedoLog>, health: &Health) {
    let batch = log.lock().take();
    if let Some(batch) = batch {
        match fold(conn, &batch) {
            Ok(()) => health.record(Stage::Database, Ok(())),
            Err(error) => {
                health.record(Stage::Database, Err(&error.to_string()));
                log.lock().put_back(batch);
                return;
            }
        }
        // Copies the pages just written from SQLite's own log into the file, so that its log
        // starts over at the next fold (a backup reading meanwhile holds that up: no harm).
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "could not checkpoint the database");
        }
    }
    let inactive = match log.lock().inactive_to_empty() {
        Ok(Some(file)) => file,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "could not empty a file of the redo log");
            return;
        }
    };
    match empty_segment(&inactive) {
        Ok(true) => log.lock().emptied(),
        // A backup is reading it: emptied after the backup, at a later round.
        Ok(false) => tracing::debug!("a backup holds the redo log; emptied later"),
        Err(error) => tracing::warn!(%error, "could not empty a file of the redo log"),
    }
}

/// Commits a batch and the sequence number it runs through, in one transaction.
fn fold(conn: &Connection, batch: &Batch) -> rusqlite::Result<()> {
    let through = Write::Meta {
        key: Meta::RedoThrough,
        value: batch.through.to_string(),
    };
    commit(conn, batch.writes.iter().chain(std::iter::once(&through)))
}

/// The server stops, and everything is folded in: the SQLite file alone holds it all.
fn close(conn: Connection, log: &Mutex<RedoLog>) {
    if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%error, "could not checkpoint the database on shutdown");
    }
    drop(conn);
    match log.lock().empty_all() {
        Ok(true) => {}
        Ok(false) => tracing::info!("the redo log is kept: it is read back on the next start"),
        Err(error) => tracing::warn!(%error, "could not empty the redo log on shutdown"),
    }
}
