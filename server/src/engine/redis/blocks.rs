//! Block lists in Redis: one set per user (`{prefix}blocks:{user}`) and a version per user
//! (`{prefix}block-versions`). Each change runs in one script that also publishes the new full
//! list and its version on the control channel, so every node learns the lists in the order
//! they were made; after a pub/sub outage a node reads the lists of its local users again.

use std::sync::Arc;

use super::{Shared, scripts, unavailable};
use crate::engine::{BlockOutcome, BlockSnapshot, Delivery, EngineError};

impl Shared {
    /// Adds `target` to `user`'s set unless it holds `max` others already.
    pub(super) async fn block(
        &self,
        user: &str,
        target: &str,
        max: usize,
    ) -> Result<BlockOutcome, EngineError> {
        let changed: Option<(u64, Vec<String>)> = scripts::BLOCK
            .key(self.keys.blocks(user))
            .key(self.keys.block_versions())
            .key(self.keys.broadcast())
            .arg(max)
            .arg(target)
            .arg(user)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match changed {
            Some((version, users)) => BlockOutcome::Blocked(snapshot(version, users)),
            None => BlockOutcome::TooMany,
        })
    }

    /// Removes `target` from `user`'s set; returns what is left.
    pub(super) async fn unblock(
        &self,
        user: &str,
        target: &str,
    ) -> Result<BlockSnapshot, EngineError> {
        let (version, users): (u64, Vec<String>) = scripts::UNBLOCK
            .key(self.keys.blocks(user))
            .key(self.keys.block_versions())
            .key(self.keys.broadcast())
            .arg(target)
            .arg(user)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(snapshot(version, users))
    }

    /// `user`'s list and its version, read together (MULTI).
    pub(super) async fn blocked(&self, user: &str) -> Result<BlockSnapshot, EngineError> {
        let (version, users): (Option<u64>, Vec<String>) = redis::pipe()
            .atomic()
            .hget(self.keys.block_versions(), user)
            .smembers(self.keys.blocks(user))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(snapshot(version.unwrap_or(0), users))
    }

    /// Reads the block lists of every user connected here and hands them to the hub: changes
    /// published while the pub/sub connection was down were missed.
    pub(super) async fn reload_blocks(&self) -> Result<(), EngineError> {
        let users: Vec<String> = self.local_users.lock().keys().cloned().collect();
        for user in users {
            let blocks = self.blocked(&user).await?;
            self.sink.deliver(Delivery::Blocks {
                user: Arc::from(user.as_str()),
                blocks: Arc::new(blocks),
                reset: true,
            });
        }
        Ok(())
    }
}

fn snapshot(version: u64, mut users: Vec<String>) -> BlockSnapshot {
    users.sort_unstable();
    BlockSnapshot { version, users }
}
