//! `chat-server backup FILE`: a consistent copy of the live database, taken with SQLite's online
//! backup while the server keeps serving (a reader in WAL mode never holds up its writer), with
//! the changes of the redo log not yet folded into the file folded into the copy.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::redo;
use super::schema::{Meta, meta_number};
use super::writer::{Write, commit};

/// Longest a backup waits for the database to be free to read (a checkpoint starting over).
const BUSY_FOR: Duration = Duration::from_secs(10);

/// Copies the database at `database` to `to` as of one moment, checks the copy, and only then
/// puts it at `to` (replacing what was there): a failed backup leaves no file behind. The copy
/// is readable by its owner only (it holds guests' secret hashes). Returns its size in bytes.
pub fn backup(database: &Path, to: &Path) -> Result<u64, String> {
    if !database.exists() {
        return Err(format!("there is no database at {}", database.display()));
    }
    refuse_the_database_itself(database, to)?;
    let source = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {}: {e}", database.display()))?;
    source
        .busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    // Held (shared) from before the copy until the log is read: the server empties a file of
    // its log only once it is folded into the database, and not while a backup holds it.
    let mut log = Vec::new();
    for path in redo::segment_paths(database) {
        match File::open(&path) {
            Ok(file) => {
                file.lock_shared()
                    .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
                log.push(file);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(format!("cannot open {}: {error}", path.display())),
        }
    }
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = copy(&source, &partial, &log).and_then(|()| {
        std::fs::rename(&partial, to)
            .map_err(|e| format!("cannot move the copy to {}: {e}", to.display()))
    });
    if let Err(error) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    Ok(std::fs::metadata(to).map(|m| m.len()).unwrap_or(0))
}

/// A copy written over the live database (or its log) would lose everything after it.
fn refuse_the_database_itself(database: &Path, to: &Path) -> Result<(), String> {
    let own = |suffix: &str| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let [redo0, redo1] = redo::segment_paths(database);
    for file in [
        database.to_path_buf(),
        own("-wal"),
        own("-shm"),
        super::lock_path(database),
        redo0,
        redo1,
    ] {
        if same_file(&file, to) {
            return Err(format!(
                "{} is the live database's own file: give the copy another name",
                to.display()
            ));
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies every page in one step (one read transaction: one moment of the database) into a new
/// file at `partial`, folds in the records of the redo `log` the file did not hold yet, gives
/// the copy an epoch of its own, and checks it.
fn copy(source: &Connection, partial: &Path, log: &[File]) -> Result<(), String> {
    let _ = std::fs::remove_file(partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let mut target =
        Connection::open(partial).map_err(|e| format!("cannot open {}: {e}", partial.display()))?;
    {
        let backup = Backup::new(source, &mut target).map_err(|e| e.to_string())?;
        let started = Instant::now();
        loop {
            match backup.step(-1).map_err(|e| e.to_string())? {
                StepResult::Done => break,
                _ if started.elapsed() > BUSY_FOR => {
                    return Err(format!(
                        "the database stayed busy for {} s",
                        BUSY_FOR.as_secs()
                    ));
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    fold_log(&target, log)?;
    let check: String = target
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if check != "ok" {
        return Err(format!("the copy does not check out: {check}"));
    }
    // A self-contained file: no write-ahead log beside it.
    let mode: String = target
        .pragma_update_and_check(None, "journal_mode", "DELETE", |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(format!("the copy stayed in {mode:?} journal mode"));
    }
    Ok(())
}

/// Folds into the copy the records of the live database's redo log past those its file held,
/// and gives the copy an epoch of its own (so that, once it is restored, the live log left
/// beside it is never applied to it).
fn fold_log(target: &Connection, log: &[File]) -> Result<(), String> {
    let epoch = meta_number(target, Meta::RedoEpoch)?.unwrap_or(0);
    let through = meta_number(target, Meta::RedoThrough)?.unwrap_or(0);
    // The first file again after the second: should the server have moved on to the second
    // while the first was read, the first's last records are read then (it empties neither
    // while the backup holds them, so it moves on once at most).
    let order: Vec<&File> = log.iter().chain(log.first()).collect();
    let read =
        redo::read(&order, epoch, through).map_err(|e| format!("cannot read the redo log: {e}"))?;
    if read.past_gap > 0 {
        return Err(format!(
            "the redo log has a gap after record {} (damaged?): the copy would miss changes",
            read.through
        ));
    }
    let markers = [
        Write::Meta {
            key: Meta::RedoThrough,
            value: read.through.to_string(),
        },
        Write::Meta {
            key: Meta::RedoEpoch,
            value: rand::random::<u64>().to_string(),
        },
    ];
    let writes = read.records.iter().flat_map(|record| &record.writes);
    commit(target, writes.chain(&markers))
        .map_err(|e| format!("cannot fold the redo log into the copy: {e}"))
}
