//! The absorber: a thread that folds the redo log into the SQLite file about once a second,
//! everything committed since the last fold in one transaction, and empties what it folded
//! once that is on the disk. At start, what the log holds is folded in the same way.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use super::Durability;
use super::health::{Health, Stage};
use super::redo::{self, RedoLog, empty_segment};
use super::schema::{self, Meta};
use super::writer::{Write, commit};

/// How often the redo log is folded into SQLite.
const PERIOD: Duration = Duration::from_secs(1);

/// Rounds a backup may hold the log before the server warns that it cannot empty it.
const HELD_WARNING_ROUNDS: u64 = 60;

/// The running absorber; dropping it folds in what is left and stops it.
pub struct Absorber {
    control: Arc<(Mutex<Control>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the thread is asked to do, and how far it got.
#[derive(Default)]
struct Control {
    stop: bool,
    /// Rounds asked for ahead of time ([`Absorber::fold_now`]).
    asked: u64,
    /// Of those, the ones begun and finished.
    done: u64,
}

/// What the thread knows between rounds.
#[derive(Default)]
struct Progress {
    /// Everything folded in so far is on the disk (a checkpoint completed since).
    on_disk: bool,
    /// Rounds in a row a backup held the file to empty.
    held: u64,
}

impl Absorber {
    /// Starts folding `log` into the database behind `conn` (its only writer from now on).
    pub fn start(
        conn: Connection,
        log: Arc<Mutex<RedoLog>>,
        health: Arc<Health>,
    ) -> Result<Self, String> {
        let control = Arc::new((Mutex::new(Control::default()), Condvar::new()));
        let controlled = control.clone();
        let thread = std::thread::Builder::new()
            .name("chat-absorb".into())
            .spawn(move || {
                let _stopped = Stopped(health.clone());
                let (state, wake) = &*controlled;
                let mut progress = Progress {
                    on_disk: true,
                    held: 0,
                };
                loop {
                    let (stopping, asked) = {
                        let mut state = state.lock();
                        if !state.stop && state.asked == state.done {
                            wake.wait_for(&mut state, PERIOD);
                        }
                        (state.stop, state.asked)
                    };
                    // A last round when stopping: everything is folded in before closing.
                    round(&conn, &log, &health, &mut progress);
                    state.lock().done = asked;
                    wake.notify_all();
                    if stopping {
                        break;
                    }
                }
                close(conn, &log);
            })
            .map_err(|e| format!("cannot start its absorber thread: {e}"))?;
        Ok(Self {
            control,
            thread: Some(thread),
        })
    }

    /// Folds in now what is committed, and returns once that is done (tests read the file).
    #[cfg(test)]
    pub fn fold_now(&self) {
        let (state, wake) = &*self.control;
        let mut state = state.lock();
        state.asked += 1;
        let asked = state.asked;
        wake.notify_all();
        while state.done < asked {
            wake.wait(&mut state);
        }
    }
}

impl Drop for Absorber {
    fn drop(&mut self) {
        self.control.0.lock().stop = true;
        self.control.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Dropped when the thread ends: if by a panic (a bug), changes are refused from then on
/// rather than committed to a log that nothing folds in any more.
struct Stopped(Arc<Health>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.record(
                Stage::Database,
                Err("the thread folding the redo log into the file stopped; restart the server"),
            );
        }
    }
}

/// Folds in what was committed since the last round, makes it durable, then empties the log
/// file it came from.
fn round(conn: &Connection, log: &Mutex<RedoLog>, health: &Health, progress: &mut Progress) {
    let batch = log.lock().take();
    if let Some(batch) = batch {
        match fold(conn, batch.writes.iter(), batch.through) {
            Ok(()) => health.record(Stage::Database, Ok(())),
            Err(error) => {
                health.record(Stage::Database, Err(&error.to_string()));
                log.lock().put_back(batch);
                return;
            }
        }
        progress.on_disk = false;
    }
    if !progress.on_disk {
        // Copies what was just written from SQLite's own log into the file, with an fsync of
        // each. A reader (a backup) can hold it up: the log is then emptied at a later round.
        match checkpoint(conn, "PASSIVE") {
            Ok(complete) => progress.on_disk = complete,
            Err(error) => tracing::warn!(%error, "could not checkpoint the database"),
        }
        if !progress.on_disk {
            return;
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
        Ok(true) => {
            log.lock().emptied();
            progress.held = 0;
        }
        Ok(false) => {
            progress.held += 1;
            if progress.held.is_multiple_of(HELD_WARNING_ROUNDS) {
                tracing::warn!(
                    seconds = progress.held,
                    "a backup has held the redo log this long: it grows until the backup ends"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "could not empty a file of the redo log"),
    }
}

/// Commits `writes` and the sequence number they run through, in one transaction.
fn fold<'a>(
    conn: &Connection,
    writes: impl Iterator<Item = &'a Write>,
    through: u64,
) -> rusqlite::Result<()> {
    let marker = Write::Meta {
        key: Meta::RedoThrough,
        value: through.to_string(),
    };
    // (Each item re-borrowed for as long as the marker lives, so that the two chain.)
    let writes = writes.map(|write| -> &Write { write });
    commit(conn, writes.chain(std::iter::once(&marker)))
}

/// Runs a checkpoint of SQLite's write-ahead log in `mode`: whether it copied all of it into
/// the file (and synced the file).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<bool> {
    let (busy, frames, copied): (i64, i64, i64) =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    Ok(busy == 0 && frames == copied)
}

/// The server stops, and everything is folded in: once that is on the disk, the SQLite file
/// alone holds it all.
fn close(conn: Connection, log: &Mutex<RedoLog>) {
    match checkpoint(&conn, "TRUNCATE") {
        Ok(true) => match log.lock().empty_all() {
            Ok(true) => {}
            Ok(false) => tracing::info!("the redo log is kept: it is read back on the next start"),
            Err(error) => tracing::warn!(%error, "could not empty the redo log on shutdown"),
        },
        Ok(false) => tracing::info!("a reader held the database: the redo log is kept"),
        Err(error) => tracing::warn!(%error, "could not checkpoint the database on shutdown"),
    }
}

/// Folds into the database what its redo log holds that it does not (the changes committed
/// since the last fold before the server stopped), makes that durable, empties the log, and
/// opens it for writing.
pub fn fold_at_start(
    conn: &Connection,
    path: &Path,
    durability: Durability,
) -> Result<RedoLog, String> {
    let epoch = match schema::meta_number(conn, Meta::RedoEpoch)? {
        Some(epoch) => epoch,
        None => {
            let epoch = rand::random::<u64>();
            schema::set_meta(conn, Meta::RedoEpoch, &epoch.to_string())
                .map_err(|e| e.to_string())?;
            epoch
        }
    };
    let through = schema::meta_number(conn, Meta::RedoThrough)?.unwrap_or(0);
    let mut files = Vec::new();
    for path in redo::segment_paths(path) {
        files.push(
            redo::open_segment(&path)
                .map_err(|e| format!("cannot open its redo log {}: {e}", path.display()))?,
        );
    }
    if durability == Durability::Full {
        sync_directory(path)?;
    }
    let read = redo::read(&[&files[0], &files[1]], epoch, through)
        .map_err(|e| format!("cannot read its redo log: {e}"))?;
    if read.foreign > 0 {
        tracing::warn!(
            records = read.foreign,
            "the redo log beside the database is another database's (the file was replaced by \
             a backup): not applied"
        );
    }
    if read.past_gap > 0 {
        tracing::error!(
            records = read.past_gap,
            through = read.through,
            "records of the redo log after a gap are not applied (the log was damaged, or the \
             database file is older than its log: restored by copying it?)"
        );
    }
    if !read.records.is_empty() {
        let writes = read.records.iter().flat_map(|record| &record.writes);
        fold(conn, writes, read.through)
            .map_err(|e| format!("cannot fold its redo log in: {e}"))?;
        tracing::info!(
            records = read.records.len(),
            changes = read.records.iter().map(|r| r.writes.len()).sum::<usize>(),
            "folded in the changes of the redo log"
        );
    }
    // Emptied only once what it held is on the disk in the file itself.
    if !checkpoint(conn, "TRUNCATE").map_err(|e| e.to_string())? {
        return Err(
            "a reader (a backup?) holds the database: cannot fold its redo log in; try again"
                .into(),
        );
    }
    for file in &files {
        // Waits for a backup reading it.
        file.lock()
            .and_then(|()| file.set_len(0))
            .and_then(|()| file.unlock())
            .map_err(|e| format!("cannot empty its redo log: {e}"))?;
    }
    let files = [files.remove(0), files.remove(0)];
    Ok(RedoLog::new(
        files,
        epoch,
        read.through + 1,
        durability == Durability::Full,
    ))
}

/// Makes the creation of the log's files durable (`--database-sync full`).
fn sync_directory(database: &Path) -> Result<(), String> {
    let dir = match database.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}
