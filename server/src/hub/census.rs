//! What the console asks of this node's hub: its busiest channels, and one user's connections.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{ConnId, Hub};

impl Hub {
    /// The `limit` channels with the most local members: members and messages delivered.
    /// Counted under the read lock without allocating; only the chosen ones are copied out.
    pub fn busiest_channels(&self, limit: usize) -> Vec<crate::engine::ChannelLoad> {
        let channels = self.channels.read();
        let mut counted: Vec<(usize, &Arc<str>, u64)> = channels
            .iter()
            .map(|(name, entry)| (entry.len(), name, entry.messages.load(Ordering::Relaxed)))
            .collect();
        let busiest_first = |a: &(usize, &Arc<str>, u64), b: &(usize, &Arc<str>, u64)| {
            b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
        };
        if counted.len() > limit && limit > 0 {
            counted.select_nth_unstable_by(limit - 1, busiest_first);
        }
        counted.truncate(limit);
        counted.sort_unstable_by(busiest_first);
        counted
            .into_iter()
            .map(|(members, name, messages)| crate::engine::ChannelLoad {
                name: name.to_string(),
                members: members as u64,
                messages,
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use crate::hub::Hub;
    use crate::metrics::Metrics;

    #[test]
    fn the_busiest_channels_are_those_with_the_most_members_then_by_name() {
        let hub = Hub::new(8, Arc::new(Metrics::new()));
        let shutdown = CancellationToken::new();
        let members = [("quiet", 1), ("busy", 3), ("b-middle", 2), ("a-middle", 2)];
        let mut conns = Vec::new();
        for (channel, count) in members {
            for n in 0..count {
                let (handle, kill) =
                    hub.connect(Arc::from(format!("{channel}-{n}")), None, &shutdown);
                hub.entry(channel).insert(&handle);
                conns.push((handle, kill));
            }
        }
        let names = |limit| -> Vec<(String, u64)> {
            hub.busiest_channels(limit)
                .into_iter()
                .map(|load| (load.name, load.members))
                .collect()
        };
        assert_eq!(
            names(3),
            [
                ("busy".into(), 3),
                ("a-middle".into(), 2),
                ("b-middle".into(), 2)
            ]
        );
        assert_eq!(names(10).len(), 4);
        assert!(names(0).is_empty());
        // A user's connections here, and the channels they are in.
        let (connections, channels) = hub.user_here("busy-0");
        assert_eq!((connections, channels), (1, vec![Arc::from("busy")]));
    }
}
