//! `chat-server backup FILE`: a consistent copy of the live database, taken with SQLite's online
//! backup while the server keeps serving (a reader in WAL mode never holds up its writer).

use std::path::Path;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// Copies the database at `database` to `to` as of one moment, checks the copy, and only then
/// puts it at `to` (replacing what was there): a failed backup never leaves a partial file.
/// Returns the copy's size in bytes.
pub fn backup(database: &Path, to: &Path) -> Result<u64, String> {
    if !database.exists() {
        return Err(format!("there is no database at {}", database.display()));
    }
    let source = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {}: {e}", database.display()))?;
    source
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let copy = |partial: &Path| -> Result<(), String> {
        let mut target = Connection::open(partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        {
            let backup = Backup::new(&source, &mut target).map_err(|e| e.to_string())?;
            // All pages in one step: one read transaction, so one moment of the database.
            loop {
                match backup.step(-1).map_err(|e| e.to_string())? {
                    StepResult::Done => break,
                    StepResult::More | StepResult::Busy | StepResult::Locked => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    _ => std::thread::sleep(std::time::Duration::from_millis(10)),
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
        target
            .pragma_update(None, "journal_mode", "DELETE")
            .map_err(|e| e.to_string())
    };
    if let Err(error) = copy(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, to)
        .map_err(|e| format!("cannot move the copy to {}: {e}", to.display()))?;
    Ok(std::fs::metadata(to).map(|m| m.len()).unwrap_or(0))
}
