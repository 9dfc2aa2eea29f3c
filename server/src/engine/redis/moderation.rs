//! Mutes, bans and block lists on Redis ([`ModerationStore`]): a key per mute or ban (expiring
//! with it), the block lists in [`super::blocks`]; every action is published on the bus so that
//! every node applies it.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::wire::Wire;
use super::{RedisEngine, unavailable};
use crate::engine::{BlockOutcome, BlockSnapshot, EngineError, ModerationStore, now_ms};
use crate::moderation::{Sanction, Standing};

#[async_trait]
impl ModerationStore for RedisEngine {
    async fn moderate(&self, user_id: &str, sanction: Sanction) -> Result<(), EngineError> {
        let keys = &self.shared.keys;
        let mut conn = self.conn();
        let stored = match &sanction {
            Sanction::Mute { until_ms, reason } => Some((keys.mute(user_id), *until_ms, reason)),
            Sanction::Ban { until_ms, reason } => Some((keys.ban(user_id), *until_ms, reason)),
            Sanction::Unmute | Sanction::Unban | Sanction::Kick { .. } => None,
        };
        if let Some((key, until_ms, reason)) = stored {
            let value = serde_json::json!([until_ms, reason]).to_string();
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(value);
            if until_ms != u64::MAX {
                set.arg("PX").arg(until_ms.saturating_sub(now_ms()).max(1));
            }
            let _: () = set.query_async(&mut conn).await.map_err(unavailable)?;
        }
        let lifted = match sanction {
            Sanction::Unmute => Some(keys.mute(user_id)),
            Sanction::Unban => Some(keys.ban(user_id)),
            _ => None,
        };
        if let Some(key) = lifted {
            let _: i64 = conn.del(key).await.map_err(unavailable)?;
        }
        self.shared
            .publish(keys.bus(), Wire::sanction(user_id, &sanction))
            .await
            .map_err(unavailable)
    }

    async fn standing(&self, user_id: &str) -> Result<Standing, EngineError> {
        let keys = &self.shared.keys;
        let (mute, ban): (Option<String>, Option<String>) = redis::pipe()
            .get(keys.mute(user_id))
            .get(keys.ban(user_id))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let parse = |value: Option<String>| {
            value.and_then(|v| serde_json::from_str::<(u64, String)>(&v).ok())
        };
        Ok(Standing {
            muted: parse(mute),
            banned: parse(ban),
        })
    }

    async fn block(
        &self,
        user: &str,
        target: &str,
        max: usize,
    ) -> Result<BlockOutcome, EngineError> {
        self.shared.block(user, target, max).await
    }

    async fn unblock(&self, user: &str, target: &str) -> Result<BlockSnapshot, EngineError> {
        self.shared.unblock(user, target).await
    }

    async fn blocked(&self, user: &str) -> Result<BlockSnapshot, EngineError> {
        self.shared.blocked(user).await
    }
}
