//! Node liveness (heartbeats, reaping dead nodes) and the per-node counts behind presence and
//! online users.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::wire::Wire;
use super::{Shared, scripts};
use crate::engine::now_ms;

/// A node is dead when its liveness key is older than this.
const NODE_TTL: Duration = Duration::from_secs(15);
/// How often a node renews its liveness and looks for dead nodes.
const HEARTBEAT: Duration = Duration::from_secs(5);

impl Shared {
    /// Adds (or removes) this node's `member` in `node_set`, moving the node count of `field`
    /// in `counts` by one when it changed. Returns whether the count crossed zero (first node
    /// in, last node out).
    async fn count(
        &self,
        add: bool,
        node_set: String,
        counts: String,
        member: &str,
        field: &str,
    ) -> redis::RedisResult<bool> {
        let script = if add {
            &scripts::COUNT_ADD
        } else {
            &scripts::COUNT_REMOVE
        };
        let crossed: i64 = script
            .key(node_set)
            .key(counts)
            .arg(member)
            .arg(field)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(crossed == 1)
    }

    /// [`Shared::count`] of a user's presence in a channel.
    pub(super) async fn count_presence(
        &self,
        add: bool,
        channel: &str,
        user: &str,
    ) -> redis::RedisResult<bool> {
        let member = format!("{channel}\n{user}");
        self.count(
            add,
            self.keys.node_presence(&self.node),
            self.keys.presence(channel),
            &member,
            user,
        )
        .await
    }

    /// [`Shared::count`] of a user being online.
    pub(super) async fn count_online(&self, add: bool, user: &str) -> redis::RedisResult<bool> {
        self.count(
            add,
            self.keys.node_users(&self.node),
            self.keys.online(),
            user,
            user,
        )
        .await
    }
}

/// Renews this node's liveness and reaps nodes that stopped beating.
pub(super) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let beaten = beat(&shared).await;
        shared.commands_up.store(beaten.is_ok(), Ordering::Release);
        match beaten {
            Err(error) => {
                tracing::warn!(%error, "Redis heartbeat failed");
                continue;
            }
            Ok(true) => {
                // Not registered: first beat, or reaped by another node while unreachable.
                if let Err(error) = reassert(&shared).await {
                    tracing::warn!(%error, "could not re-register this node");
                }
            }
            Ok(false) => {}
        }
        if let Err(error) = reap_dead_nodes(&shared).await {
            tracing::warn!(%error, "could not reap dead nodes");
        }
    }
}

/// Renews liveness. Returns true when this node was not registered (first beat, or another
/// node reaped it while it could not beat): its state must then be written again.
async fn beat(shared: &Shared) -> redis::RedisResult<bool> {
    let mut conn = shared.conn.clone();
    let now = now_ms();
    let (added,): (i64,) = redis::pipe()
        .cmd("SET")
        .arg(shared.keys.alive(&shared.node))
        .arg(1)
        .arg("PX")
        .arg(NODE_TTL.as_millis() as u64)
        .ignore()
        .zadd(shared.keys.nodes(), &shared.node, now)
        .query_async(&mut conn)
        .await?;
    Ok(added == 1)
}

async fn reap_dead_nodes(shared: &Shared) -> redis::RedisResult<()> {
    let mut conn = shared.conn.clone();
    let stale_before = now_ms().saturating_sub(NODE_TTL.as_millis() as u64);
    let candidates: Vec<String> = conn
        .zrangebyscore(shared.keys.nodes(), 0, stale_before)
        .await?;
    for node in candidates {
        if node == shared.node || conn.exists::<_, bool>(shared.keys.alive(&node)).await? {
            continue;
        }
        let gone: Vec<String> = scripts::REAP_NODE
            .key(shared.keys.node_presence(&node))
            .key(shared.keys.node_users(&node))
            .key(shared.keys.nodes())
            .key(shared.keys.alive(&node))
            .arg(shared.keys.prefix())
            .arg(&node)
            .invoke_async(&mut conn)
            .await?;
        tracing::info!(%node, users = gone.len(), "reaped a dead node");
        for member in gone {
            let Some((channel, user)) = member.split_once('\n') else {
                continue;
            };
            let username: Option<String> = conn.hget(shared.keys.names(), user).await?;
            let payload = Wire::left(channel, user, username.as_deref());
            let _: i64 = conn.publish(shared.keys.channel(channel), payload).await?;
        }
    }
    Ok(())
}

/// Writes this node's names, presence and online users again (after Redis came back, possibly without
/// its data). Idempotent: the per-node sets make a second write a no-op.
pub(crate) async fn reassert(shared: &Shared) -> redis::RedisResult<()> {
    // Alive first, so that no other node reaps what is written next.
    beat(shared).await?;
    let mut conn = shared.conn.clone();
    let keys = &shared.keys;
    let presence: Vec<(String, String)> = shared.local_presence.lock().iter().cloned().collect();
    for (channel, user) in presence {
        shared.count_presence(true, &channel, &user).await?;
    }
    let names: Vec<(String, String)> = shared
        .local_names
        .lock()
        .iter()
        .map(|(u, n)| (u.clone(), n.clone()))
        .collect();
    for (user, name) in names {
        // Only where missing: a name set meanwhile on another node wins.
        redis::pipe()
            .hset_nx(keys.names(), &user, &name)
            .ignore()
            .hset_nx(keys.name_owners(), name.to_lowercase(), &user)
            .ignore()
            .hset_nx(keys.name_keys(), &user, name.to_lowercase())
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
    }
    let users: Vec<String> = shared.local_users.lock().keys().cloned().collect();
    for user in users {
        shared.count_online(true, &user).await?;
    }
    Ok(())
}
