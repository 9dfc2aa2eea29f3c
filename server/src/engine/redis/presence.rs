//! Presence on Redis ([`PresenceManager`]): a hash per channel of users and how many node
//! connections hold them, counted by script; each node re-asserts its own after an outage.

use async_trait::async_trait;
use protocol::PresenceUser;
use redis::AsyncCommands;

use super::{RedisEngine, unavailable};
use crate::engine::{EngineError, PresenceManager};

#[async_trait]
impl PresenceManager for RedisEngine {
    async fn presence_add(&self, channel: &str, user_id: &str) -> Result<bool, EngineError> {
        self.shared
            .local_presence
            .lock()
            .insert((channel.to_owned(), user_id.to_owned()));
        match self.shared.count_presence(true, channel, user_id).await {
            Ok(first) => Ok(first),
            Err(error) => {
                // The script may still have run (a timeout): undo, best effort, so that no
                // ghost stays in `who`, and do not re-assert it later.
                self.shared
                    .local_presence
                    .lock()
                    .remove(&(channel.to_owned(), user_id.to_owned()));
                let _ = self.shared.count_presence(false, channel, user_id).await;
                Err(unavailable(error))
            }
        }
    }

    async fn presence_remove(&self, channel: &str, user_id: &str) -> Result<bool, EngineError> {
        self.shared
            .local_presence
            .lock()
            .remove(&(channel.to_owned(), user_id.to_owned()));
        self.shared
            .count_presence(false, channel, user_id)
            .await
            .map_err(unavailable)
    }

    async fn presence(&self, channel: &str) -> Result<Vec<PresenceUser>, EngineError> {
        let mut conn = self.conn();
        let mut users: Vec<String> = conn
            .hkeys(self.shared.keys.presence(channel))
            .await
            .map_err(unavailable)?;
        if users.is_empty() {
            return Ok(Vec::new());
        }
        users.sort();
        // One MGET; on a cluster it is split by slot (each user's name is in the user's slot).
        let keys: Vec<String> = users.iter().map(|u| self.shared.keys.name(u)).collect();
        let names: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(users
            .into_iter()
            .zip(names)
            .map(|(user_id, username)| PresenceUser { user_id, username })
            .collect())
    }

    async fn online_nodes(&self, user_id: &str) -> Result<Vec<String>, EngineError> {
        let mut nodes: Vec<String> = self
            .conn()
            .smembers(self.shared.keys.online(user_id))
            .await
            .map_err(unavailable)?;
        nodes.sort();
        Ok(nodes)
    }

    async fn channels_of(&self, user_id: &str) -> Result<Vec<String>, EngineError> {
        let mut conn = self.conn();
        let suffix = format!("\n{user_id}");
        let mut channels = Vec::new();
        for node in self.online_nodes(user_id).await? {
            let index = self.shared.keys.node_presence(&node);
            let mut cursor: u64 = 0;
            loop {
                let (next, entries): (u64, Vec<String>) = redis::cmd("SSCAN")
                    .arg(&index)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                channels.extend(
                    entries
                        .iter()
                        .filter_map(|entry| entry.strip_suffix(&suffix))
                        .map(str::to_owned),
                );
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        channels.sort();
        channels.dedup();
        Ok(channels)
    }
}
