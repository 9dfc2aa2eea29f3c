//! What the console asks of this node's hub: its busiest channels, and one user's connections.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{ConnId, Hub};

impl Hub {
    /// The `limit` channels with the most local members: members and messages delivered.
    pub fn busiest_channels(&self, limit: usize) -> Vec<crate::engine::ChannelLoad> {
        let mut loads: Vec<crate::engine::ChannelLoad> = self
            .channels
            .read()
            .iter()
            .map(|(name, entry)| crate::engine::ChannelLoad {
                name: name.to_string(),
                members: entry.len() as u64,
                messages: entry.messages.load(Ordering::Relaxed),
            })
            .collect();
        loads.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
        loads.truncate(limit);
        loads
    }

    /// `user`'s connections on this node, and the channels they are in (sorted).
    pub fn user_here(&self, user: &str) -> (usize, Vec<Arc<str>>) {
        let conns: Vec<ConnId> = self
            .users
            .read()
            .get(user)
            .map(|handles| handles.iter().map(|h| h.id).collect())
            .unwrap_or_default();
        let mut channels: Vec<Arc<str>> = conns.iter().flat_map(|c| self.channels_of(*c)).collect();
        channels.sort();
        channels.dedup();
        (conns.len(), channels)
    }
}
