//! The redo log: where a commit goes first, so that acknowledging a change costs one write.
//!
//! A SQLite commit costs about 19 µs (its locks, a write of every page changed, the log's
//! index); at chat rates nearly every message commits alone, and that was a fifth of the
//! server's CPU. So a group of changes is committed by appending one record to a file of our
//! own (one `pwrite`, and an `fdatasync` with `--database-sync full`), and folded into SQLite
//! about once a second, many groups in one transaction, by the absorber (`absorb.rs`).
//!
//! The log is two files beside the database, `chat.db-redo0` and `chat.db-redo1`: records are
//! appended to the active one; each fold takes every record not yet folded and, when the other
//! file is empty, makes that one active; once the fold is committed, the file it emptied is
//! truncated. So a file is only ever truncated once all it holds is in the database.
//!
//! A record is `length (u32) · CRC-32 (u32) · epoch (u64) · sequence (u64) · JSON array of
//! changes`, little-endian, the CRC covering everything after it. A record cut short by a crash
//! (never acknowledged) or damaged ends the file for the reader. The sequence numbers go up by
//! one per record written whole (a failed write takes none, and is cut off the file); the
//! database notes the newest folded in (`meta.redo_through`), so records folded in already are
//! skipped when the log is read back, and only an unbroken run after it is applied: records past
//! a gap (a log damaged in the middle, or a database file older than its log) never are. The
//! epoch is a random number the database is given when created (and a backup copy is given
//! anew): records of another database, left beside a file restored from a backup, are never
//! applied to it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::writer::Write;

/// Bytes before a record's changes: length, CRC, epoch and sequence.
const HEADER: usize = 24;

/// Capacity of the record buffer kept between records (a larger one, for a large group, is
/// given back).
const BUFFER_KEPT: usize = 64 * 1024;

/// Largest record read back (a group is at most the journal's queue of changes): a length
/// past it is damage, not a record.
const MAX_RECORD: usize = 1 << 30;

/// The two files of the log of the database at `database`.
pub fn segment_paths(database: &Path) -> [PathBuf; 2] {
    ["-redo0", "-redo1"].map(|suffix| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Opens (creating, readable by its owner only) one file of the log.
pub fn open_segment(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Empties a file of the log, holding its lock meanwhile (a backup reading the log holds it
/// shared, so a file is never emptied under a backup). False when a backup holds it now.
pub fn empty_segment(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(error)) => return Err(error),
    }
    let emptied = file.set_len(0);
    let _ = file.unlock();
    emptied.map(|()| true)
}

/// One record read back.
#[derive(Debug)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Its changes, in the order they were made.
    pub writes: Vec<Write>,
}

/// What the log held for a database.
#[derive(Debug, Default)]
pub struct Replay {
    /// Records of this database following the one folded in last, in order, without a gap.
    pub records: Vec<Record>,
    /// The sequence number the records run through (`through` when there are none).
    pub through: u64,
    /// Records of this database past a gap: not applied.
    pub past_gap: usize,
    /// Records of another database (left beside a file restored from a backup), not applied.
    pub foreign: usize,
}

/// Reads the files of the log, each from its start: the unbroken run of records of `epoch`
/// following `through`. A file may be given twice (a backup reads the first again after the
/// second, in case the server moved on to the second meanwhile): records are taken once.
pub fn read(files: &[&File], epoch: u64, through: u64) -> io::Result<Replay> {
    let mut replay = Replay::default();
    let mut records = Vec::new();
    for mut file in files.iter().copied() {
        let mut bytes = Vec::new();
        file.rewind()?;
        file.read_to_end(&mut bytes)?;
        parse(&bytes, epoch, through, &mut records, &mut replay.foreign);
    }
    records.sort_by_key(|record: &Record| record.seq);
    records.dedup_by_key(|record| record.seq);
    replay.through = through;
    for record in records {
        if record.seq == replay.through + 1 {
            replay.through = record.seq;
            replay.records.push(record);
        } else {
            replay.past_gap += 1;
        }
    }
    Ok(replay)
}

/// Parses the records of one file up to the first that is cut short or damaged: those of
/// `epoch` newer than `through` go to `records`; those of other epochs are counted.
fn parse(
    mut bytes: &[u8],
    epoch: u64,
    through: u64,
    records: &mut Vec<Record>,
    foreign: &mut usize,
) {
    let mut previous = 0;
    while bytes.len() >= HEADER {
        let length = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        if length > MAX_RECORD || bytes.len() < HEADER + length {
            return;
        }
        let record = &bytes[..HEADER + length];
        if crc32fast::hash(&record[8..]) != crc {
            return;
        }
        let record_epoch = u64::from_le_bytes(record[8..16].try_into().unwrap());
        let seq = u64::from_le_bytes(record[16..24].try_into().unwrap());
        // Within a file sequence numbers only go up: anything else is left from before.
        if seq <= previous {
            return;
        }
        previous = seq;
        bytes = &bytes[HEADER + length..];
        if record_epoch != epoch {
            *foreign += 1;
            continue;
        }
        if seq <= through {
            continue;
        }
        match serde_json::from_slice(&record[HEADER..]) {
            Ok(writes) => records.push(Record { seq, writes }),
            // Its CRC checked out, so this build wrote it: a bug, said loudly, not skipped.
            Err(error) => {
                tracing::error!(seq, %error, "a record of the redo log cannot be read back");
                return;
            }
        }
    }
}

/// The writing end of the log, with the changes appended and not yet folded into SQLite.
pub struct RedoLog {
    segments: [Segment; 2],
    active: usize,
    /// The inactive file is empty: the next fold may make it active.
    inactive_empty: bool,
    epoch: u64,
    next_seq: u64,
    /// Flush each record to the disk (`--database-sync full`).
    sync: bool,
    unabsorbed: Vec<Write>,
    buffer: Vec<u8>,
}

struct Segment {
    file: File,
    /// Where the next record goes (past the last one written whole).
    end: u64,
}

/// Changes taken to be folded into SQLite, and the sequence number they run through.
pub struct Batch {
    /// The changes, in order.
    pub writes: Vec<Write>,
    /// Every record up to this one is in `writes` or folded in already.
    pub through: u64,
}

impl RedoLog {
    /// The log over two empty files, numbering records from `next_seq`.
    pub fn new(files: [File; 2], epoch: u64, next_seq: u64, sync: bool) -> Self {
        Self {
            segments: files.map(|file| Segment { file, end: 0 }),
            active: 0,
            inactive_empty: true,
            epoch,
            next_seq,
            sync,
            unabsorbed: Vec::new(),
            buffer: Vec::with_capacity(BUFFER_KEPT),
        }
    }

    /// Appends one record holding `writes`; once it returns Ok they are committed (and must
    /// then be handed to [`keep`](Self::keep)). A failed write (or flush) is cut off the file,
    /// and its number is the next record's: a failed record never comes back.
    pub fn append<'a>(&mut self, writes: impl Iterator<Item = &'a Write>) -> io::Result<()> {
        let seq = self.next_seq;
        let buffer = &mut self.buffer;
        buffer.clear();
        buffer.resize(HEADER, 0);
        buffer.push(b'[');
        for (i, write) in writes.enumerate() {
            if i > 0 {
                buffer.push(b',');
            }
            serde_json::to_writer(&mut *buffer, write).map_err(io::Error::other)?;
        }
        buffer.push(b']');
        let length = u32::try_from(buffer.len() - HEADER)
            .ok()
            .filter(|&length| length as usize <= MAX_RECORD)
            .ok_or_else(|| io::Error::other("a group of changes too large for one record"))?;
        buffer[0..4].copy_from_slice(&length.to_le_bytes());
        buffer[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        buffer[16..24].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32fast::hash(&buffer[8..]);
        buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        let segment = &mut self.segments[self.active];
        let written = segment
            .file
            .write_all_at(buffer, segment.end)
            .and_then(|()| {
                if self.sync {
                    segment.file.sync_data()
                } else {
                    Ok(())
                }
            });
        if let Err(error) = written {
            // Were it left whole past the end, a crash before the next record could bring it
            // back; should this fail too, the next record is written over it (same number).
            let _ = segment.file.set_len(segment.end);
            return Err(error);
        }
        segment.end += buffer.len() as u64;
        self.next_seq += 1;
        if buffer.capacity() > BUFFER_KEPT {
            *buffer = Vec::with_capacity(BUFFER_KEPT);
        }
        Ok(())
    }

    /// Keeps a committed change until it is folded into SQLite.
    pub fn keep(&mut self, write: Write) {
        self.unabsorbed.push(write);
    }

    /// Takes every committed change not yet folded in, and, when the other file is empty,
    /// makes it the one appended to (so that the one appended to until now can be emptied once
    /// the batch is folded in). None when there is nothing to fold.
    pub fn take(&mut self) -> Option<Batch> {
        if self.unabsorbed.is_empty() {
            return None;
        }
        let writes = std::mem::take(&mut self.unabsorbed);
        if self.inactive_empty {
            self.active ^= 1;
            self.inactive_empty = false;
        }
        Some(Batch {
            writes,
            through: self.next_seq - 1,
        })
    }

    /// Puts back a batch that could not be folded in, ahead of what came since.
    pub fn put_back(&mut self, mut batch: Batch) {
        batch.writes.append(&mut self.unabsorbed);
        self.unabsorbed = batch.writes;
    }

    /// The inactive file, to be emptied (everything it holds is folded in) unless it is
    /// already; `None` when it is. Empty it outside the lock, then call
    /// [`emptied`](Self::emptied).
    pub fn inactive_to_empty(&mut self) -> io::Result<Option<File>> {
        if self.inactive_empty {
            return Ok(None);
        }
        let inactive = &self.segments[self.active ^ 1];
        if inactive.end == 0 {
            self.inactive_empty = true;
            return Ok(None);
        }
        inactive.file.try_clone().map(Some)
    }

    /// The inactive file was emptied.
    pub fn emptied(&mut self) {
        self.segments[self.active ^ 1].end = 0;
        self.inactive_empty = true;
    }

    /// Empties both files, when everything is folded in (the server stops). False if a backup
    /// holds one of them.
    pub fn empty_all(&mut self) -> io::Result<bool> {
        if !self.unabsorbed.is_empty() {
            return Ok(false);
        }
        let mut all = true;
        for segment in &mut self.segments {
            if segment.end > 0 {
                if empty_segment(&segment.file)? {
                    segment.end = 0;
                } else {
                    all = false;
                }
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(user: &str) -> Write {
        Write::Name {
            user_id: user.into(),
            name: format!("name of {user}"),
            at_ms: 0,
        }
    }

    fn users(replay: &Replay) -> Vec<(u64, Vec<String>)> {
        replay
            .records
            .iter()
            .map(|record| {
                let users = record.writes.iter().map(|write| match write {
                    Write::Name { user_id, .. } => user_id.clone(),
                    other => panic!("unexpected {other:?}"),
                });
                (record.seq, users.collect())
            })
            .collect()
    }

    fn files(dir: &Path) -> [File; 2] {
        segment_paths(&dir.join("chat.db")).map(|path| open_segment(&path).unwrap())
    }

    fn reread(dir: &Path, epoch: u64, through: u64) -> Replay {
        let [first, second] = files(dir);
        read(&[&first, &second], epoch, through).unwrap()
    }

    #[test]
    fn records_come_back_in_order_across_both_files_past_what_was_folded_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RedoLog::new(files(dir.path()), 7, 1, false);
        log.append([name("a"), name("b")].iter()).unwrap();
        log.keep(name("a"));
        log.keep(name("b"));
        let batch = log.take().unwrap();
        assert_eq!((batch.writes.len(), batch.through), (2, 1));
        // Now appending to the other file.
        log.append([name("c")].iter()).unwrap();
        log.append([name("d")].iter()).unwrap();
        let all = reread(dir.path(), 7, 0);
        assert_eq!(
            users(&all),
            vec![
                (1, vec!["a".into(), "b".into()]),
                (2, vec!["c".into()]),
                (3, vec!["d".into()]),
            ]
        );
        assert_eq!(all.through, 3);
        assert_eq!(
            users(&reread(dir.path(), 7, 2)),
            vec![(3, vec!["d".into()])]
        );
        // Another database's records are counted, never applied.
        let foreign = reread(dir.path(), 8, 0);
        assert_eq!((foreign.records.len(), foreign.foreign), (0, 3));
        // The folded-in file is emptied; the rest stays.
        let emptied = log.inactive_to_empty().unwrap().unwrap();
        assert!(empty_segment(&emptied).unwrap());
        log.emptied();
        assert_eq!(users(&reread(dir.path(), 7, 1)).len(), 2);
    }

    #[test]
    fn a_torn_or_damaged_record_ends_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RedoLog::new(files(dir.path()), 1, 1, true);
        for user in ["a", "b", "c"] {
            log.append([name(user)].iter()).unwrap();
        }
        let path = &segment_paths(&dir.path().join("chat.db"))[0];
        let whole = std::fs::read(path).unwrap();
        let record = whole.len() / 3;
        // Cut short in the third record (a crash while writing it).
        std::fs::write(path, &whole[..whole.len() - 5]).unwrap();
        assert_eq!(reread(dir.path(), 1, 0).records.len(), 2);
        // A byte of the second record changed: it and all after it are not trusted.
        let mut damaged = whole.clone();
        damaged[record + HEADER + 3] ^= 0x20;
        std::fs::write(path, &damaged).unwrap();
        assert_eq!(
            users(&reread(dir.path(), 1, 0)),
            vec![(1, vec!["a".into()])]
        );
    }

    #[test]
    fn a_failed_write_is_written_over_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let [first, second] = files(dir.path());
        let mut log = RedoLog::new([full, second], 1, 1, false);
        assert!(log.append([name("lost")].iter()).is_err());
        // A fold moves on to the other (real) file.
        log.keep(name("x"));
        let _ = log.take().unwrap();
        log.append([name("kept")].iter()).unwrap();
        drop(first);
        // The failed record took no number: no gap.
        assert_eq!(
            users(&reread(dir.path(), 1, 0)),
            vec![(1, vec!["kept".into()])]
        );
    }

    #[test]
    fn a_file_held_by_a_backup_is_not_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = &segment_paths(&dir.path().join("chat.db"))[0];
        std::fs::write(path, b"records").unwrap();
        let backup = File::open(path).unwrap();
        backup.lock_shared().unwrap();
        let server = open_segment(path).unwrap();
        assert!(!empty_segment(&server).unwrap());
        assert_eq!(std::fs::metadata(path).unwrap().len(), 7);
        backup.unlock().unwrap();
        assert!(empty_segment(&server).unwrap());
        assert_eq!(std::fs::metadata(path).unwrap().len(), 0);
    }

    #[test]
    fn only_an_unbroken_run_after_what_was_folded_in_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RedoLog::new(files(dir.path()), 1, 5, false);
        for user in ["e", "f", "g"] {
            log.append([name(user)].iter()).unwrap();
        }
        // A file folded in through 5 takes 6 and 7.
        let run = reread(dir.path(), 1, 5);
        assert_eq!((run.records.len(), run.through, run.past_gap), (2, 7, 0));
        // A file older than its log (folded in through 2 only): 5.. would leave 3 and 4 out.
        let stale = reread(dir.path(), 1, 2);
        assert_eq!(
            (stale.records.len(), stale.through, stale.past_gap),
            (0, 2, 3)
        );
    }

    #[test]
    fn a_file_read_twice_gives_its_records_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RedoLog::new(files(dir.path()), 1, 1, false);
        log.append([name("a")].iter()).unwrap();
        let [first, second] = files(dir.path());
        let twice = read(&[&first, &second, &first], 1, 0).unwrap();
        assert_eq!(users(&twice), vec![(1, vec!["a".into()])]);
    }
}
