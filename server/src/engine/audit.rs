//! The audit log: every admin action (from the console or the API) with its time, target,
//! reason and result, kept by the engine, so that in Redis modes every node reads the same log.

use async_trait::async_trait;
use protocol::MessageId;
use serde::{Deserialize, Serialize};

use super::EngineError;

/// Most entries kept; older ones are dropped first.
pub const AUDIT_KEPT: usize = 10_000;

/// Most entries in one page.
pub const AUDIT_PAGE_MAX: usize = 500;

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Muted a user.
    Mute,
    /// Lifted a mute.
    Unmute,
    /// Closed a user's connections.
    Kick,
    /// Banned a user.
    Ban,
    /// Lifted a ban.
    Unban,
    /// Sent an announcement to everyone, or to one channel.
    Broadcast,
}

impl AuditAction {
    /// The action as named in the API's paths and in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Mute => "mute",
            AuditAction::Unmute => "unmute",
            AuditAction::Kick => "kick",
            AuditAction::Ban => "ban",
            AuditAction::Unban => "unban",
            AuditAction::Broadcast => "broadcast",
        }
    }

    /// The action named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        [
            AuditAction::Mute,
            AuditAction::Unmute,
            AuditAction::Kick,
            AuditAction::Ban,
            AuditAction::Unban,
            AuditAction::Broadcast,
        ]
        .into_iter()
        .find(|action| action.as_str() == name)
    }
}

/// One admin action, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Orders the log (`ms-seq`, as message ids); given by the engine when recorded.
    pub id: MessageId,
    /// When it was done, ms since the Unix epoch.
    pub ts: u64,
    /// What was done.
    pub action: AuditAction,
    /// To whom: a user id, a channel (`#name`), or `*` (everyone).
    pub target: String,
    /// The reason given, if any (or the broadcast's text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The length of a mute or ban, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// `ok`, or why it failed.
    pub result: String,
    /// The operator's address, as the server saw it.
    pub address: String,
    /// Where it came from: `console` or `api`.
    pub via: String,
}

/// Keeps the audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Records `entry` (its `id` is given here) and returns it as kept.
    async fn record(&self, entry: AuditEntry) -> Result<AuditEntry, EngineError>;

    /// Up to `limit` entries older than `before` (the newest when `None`), newest first.
    async fn page(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, EngineError>;
}
