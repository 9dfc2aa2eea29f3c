//! The audit log in Redis ([`AuditLog`]): one stream (`audit:{log}`), capped at about
//! [`AUDIT_KEPT`] entries, each entry's id its stream id, so every node reads the same log.

use async_trait::async_trait;
use protocol::MessageId;
use redis::AsyncCommands;

use super::entries::{Entry, parse_id};
use super::{RedisEngine, unavailable};
use crate::engine::EngineError;
use crate::engine::audit::{AUDIT_KEPT, AuditEntry, AuditLog};

/// The stream field holding an entry (JSON).
const FIELD: &str = "entry";

#[async_trait]
impl AuditLog for RedisEngine {
    async fn record(&self, mut entry: AuditEntry) -> Result<AuditEntry, EngineError> {
        let body = serde_json::to_string(&entry)
            .map_err(|e| EngineError::Unavailable(format!("cannot encode an audit entry: {e}")))?;
        let id: String = redis::cmd("XADD")
            .arg(self.shared.keys.audit())
            .arg("MAXLEN")
            .arg("~")
            .arg(AUDIT_KEPT)
            .arg("*")
            .arg(FIELD)
            .arg(body)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        entry.id = parse_id(&id)?;
        Ok(entry)
    }

    async fn page(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, EngineError> {
        // An entry that cannot be read is skipped and the next older one read in its place, so
        // that a page is short only at the end of the log.
        let mut entries = Vec::with_capacity(limit);
        let mut end = before;
        while entries.len() < limit {
            let wanted = limit - entries.len();
            let upper = end.map_or_else(|| "+".to_owned(), |end| format!("({end}"));
            let newest_first: Vec<Entry> = self
                .conn()
                .xrevrange_count(self.shared.keys.audit(), upper, "-", wanted)
                .await
                .map_err(unavailable)?;
            let read = newest_first.len();
            for (id, fields) in newest_first {
                let id = parse_id(&id)?;
                end = Some(id);
                let body = fields
                    .chunks(2)
                    .find(|pair| pair[0] == FIELD)
                    .and_then(|pair| pair.get(1));
                match body.and_then(|body| serde_json::from_str::<AuditEntry>(body).ok()) {
                    Some(mut entry) => {
                        entry.id = id;
                        entries.push(entry);
                    }
                    None => tracing::warn!(%id, "skipping an audit entry that cannot be read"),
                }
            }
            if read < wanted {
                break;
            }
        }
        Ok(entries)
    }
}
