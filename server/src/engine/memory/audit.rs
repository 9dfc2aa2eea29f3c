//! The audit log on one node ([`AuditLog`]): the newest [`AUDIT_KEPT`] entries in memory and,
//! with a journal, in the embedded database.

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;
use protocol::MessageId;

use super::MemoryEngine;
use crate::engine::audit::{AUDIT_KEPT, AuditEntry, AuditLog};
use crate::engine::sqlite::{Journal, Write};
use crate::engine::{EngineError, now_ms};

/// Audit entries in this process, oldest first.
#[derive(Default)]
pub struct MemoryAudit {
    entries: Mutex<Entries>,
    journal: Option<Journal>,
}

#[derive(Default)]
struct Entries {
    kept: VecDeque<AuditEntry>,
    last: MessageId,
}

impl MemoryAudit {
    /// An audit log in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps every entry in `journal` as well; fill from it with [`restore`](Self::restore).
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Fills the log with the entries the database held (oldest first).
    pub fn restore(&self, entries: Vec<AuditEntry>) {
        let mut held = self.entries.lock();
        if let Some(newest) = entries.last() {
            held.last = held.last.max(newest.id);
        }
        held.kept.extend(entries);
        while held.kept.len() > AUDIT_KEPT {
            held.kept.pop_front();
        }
    }
}

#[async_trait]
impl AuditLog for MemoryAudit {
    async fn record(&self, mut entry: AuditEntry) -> Result<AuditEntry, EngineError> {
        let pending = {
            let mut held = self.entries.lock();
            entry.id = MemoryEngine::next_id(held.last, now_ms());
            let pending = self
                .journal
                .as_ref()
                .map(|journal| journal.write(Write::Audit(Box::new(entry.clone()))))
                .transpose()?;
            held.last = entry.id;
            held.kept.push_back(entry.clone());
            if held.kept.len() > AUDIT_KEPT {
                held.kept.pop_front();
            }
            pending
        };
        if let Some(pending) = pending {
            pending.committed().await?;
        }
        Ok(entry)
    }

    async fn page(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, EngineError> {
        let held = self.entries.lock();
        let end = match before {
            Some(before) => held.kept.partition_point(|entry| entry.id < before),
            None => held.kept.len(),
        };
        Ok(held
            .kept
            .range(end.saturating_sub(limit)..end)
            .rev()
            .cloned()
            .collect())
    }
}
