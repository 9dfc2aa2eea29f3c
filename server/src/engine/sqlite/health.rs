//! Whether the database takes changes: the redo log must take records and SQLite must take
//! what is folded in from it. While either fails, changes are refused (with the reason).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Appending to the redo log (a commit).
    Log,
    /// Folding the log into the SQLite file.
    Database,
}

impl Stage {
    fn index(self) -> usize {
        match self {
            Stage::Log => 0,
            Stage::Database => 1,
        }
    }
}

/// The outcome of the last try at each stage.
pub struct Health {
    healthy: AtomicBool,
    failures: Mutex<[Option<String>; 2]>,
    path: PathBuf,
}

impl Health {
    /// Healthy, for the database at `path` (named in the logs).
    pub fn new(path: PathBuf) -> Self {
        Self {
            healthy: AtomicBool::new(true),
            failures: Mutex::new([None, None]),
            path,
        }
    }

    /// Whether every stage worked last time it was tried.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Why changes are refused (empty when they are not).
    pub fn reason(&self) -> String {
        let failures = self.failures.lock();
        let reasons: Vec<&str> = failures.iter().flatten().map(String::as_str).collect();
        reasons.join("; ")
    }

    /// Records how a try at `stage` went, and logs when changes start or stop being refused.
    pub fn record(&self, stage: Stage, outcome: Result<(), &str>) {
        if outcome.is_ok() && self.healthy() {
            return;
        }
        let mut failures = self.failures.lock();
        let slot = &mut failures[stage.index()];
        match outcome {
            Ok(()) => *slot = None,
            Err(error) => {
                let first = slot.is_none();
                *slot = Some(error.to_owned());
                if first {
                    tracing::error!(
                        path = %self.path.display(),
                        ?stage,
                        %error,
                        "cannot write to the database; changes are refused until it can"
                    );
                }
            }
        }
        let healthy = failures.iter().all(Option::is_none);
        if healthy && !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(path = %self.path.display(), "the database accepts writes again");
        }
        if !healthy {
            self.healthy.store(false, Ordering::Relaxed);
        }
    }
}
