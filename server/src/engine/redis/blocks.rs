//! Block lists in Redis: one set per user (`blocks:{user}`) and its version (`block-version:{user}`,
//! the same slot). Each change runs in one script that bumps the version; the new full list is
//! then published with its version on the bus, and nodes apply only lists newer than theirs, so
//! they end on the last change whatever order the publications arrive in. After a pub/sub outage a
//! node reads the lists of its local users again.

use std::sync::Arc;

use super::wire::Wire;
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
            .key(self.keys.block_version(user))
            .arg(max)
            .arg(target)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match changed {
            Some((version, users)) => {
                BlockOutcome::Blocked(self.announce_blocks(user, snapshot(version, users)).await?)
            }
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
            .key(self.keys.block_version(user))
            .arg(target)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.announce_blocks(user, snapshot(version, users)).await
    }

    /// Tells every node `user`'s new list.
    async fn announce_blocks(
        &self,
        user: &str,
        blocks: BlockSnapshot,
    ) -> Result<BlockSnapshot, EngineError> {
        self.publish(self.keys.bus(), Wire::blocks(user, &blocks))
            .await
            .map_err(unavailable)?;
        Ok(blocks)
    }

    /// `user`'s list and its version, read together (MULTI).
    pub(super) async fn blocked(&self, user: &str) -> Result<BlockSnapshot, EngineError> {
        let (version, users): (Option<u64>, Vec<String>) = redis::pipe()
            .atomic()
            .get(self.keys.block_version(user))
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
