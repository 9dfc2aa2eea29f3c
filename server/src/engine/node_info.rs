//! What each node tells the others about itself, once a second, over the broker: the console's
//! overview of a deployment (every node, its load and its refusals).

use serde::{Deserialize, Serialize};

use crate::metrics::Refusals;

/// One node's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id (set by the engine: the Redis node id, or `local`).
    pub node: String,
    /// The server's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// When the node started, ms since the Unix epoch.
    pub started_ms: u64,
    /// When this report was made, ms since the Unix epoch.
    pub sent_ms: u64,
    /// WebSocket connections open.
    pub connections: u64,
    /// Channels with local members.
    pub channels: u64,
    /// Channel messages published by this node since it started.
    pub messages: u64,
    /// Frames sent to clients since it started (deliveries).
    pub deliveries: u64,
    /// Whether its engine is reachable and keeps what it is given (its `/healthz`).
    pub engine_ready: bool,
    /// Errors, closes and limit hits since it started.
    pub refusals: Refusals,
    /// Its busiest channels (most local members first, at most [`BUSIEST_CHANNELS`]). Left out
    /// of the overview (`GET /admin/channels` lists them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub busiest: Vec<ChannelLoad>,
}

/// Channels a node lists in its report.
pub const BUSIEST_CHANNELS: usize = 200;

/// One channel on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelLoad {
    /// The channel.
    pub name: String,
    /// Local members (connections).
    pub members: u64,
    /// Chat messages delivered to the node since it had members there.
    pub messages: u64,
}
