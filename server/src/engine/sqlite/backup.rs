//! `chat-server backup FILE`: a consistent copy of the live database, taken with SQLite's online
//! backup while the server keeps serving (a reader in WAL mode never holds up its writer).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

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
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = copy(&source, &partial).and_then(|()| {
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
    for file in [
        database.to_path_buf(),
        own("-wal"),
        own("-shm"),
        super::lock_path(database),
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
/// file at `partial`, then checks it.
fn copy(source: &Connection, partial: &Path) -> Result<(), String> {
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
