//! Node liveness (heartbeats, reaping dead nodes) and the per-node records behind presence and
//! online users.
//!
//! A node records what it holds in sets of its own slot (`node-presence:{node}` of
//! `channel\nuser`, `node-users:{node}`), and moves the shared counts (`presence:{channel}`,
//! `online:{user}`) in their own slots. Each count moves only when the node's record changed,
//! so every step can be repeated (after a timeout, by two reapers at once) without counting
//! twice. No command touches two slots.

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
    /// Records (or forgets) `user` in `channel` on this node and moves the channel's count of
    /// nodes holding the user when the record changed. Returns whether the count crossed zero
    /// (first node in, last node out).
    pub(super) async fn count_presence(
        &self,
        add: bool,
        channel: &str,
        user: &str,
    ) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let member = format!("{channel}\n{user}");
        let record = self.keys.node_presence(&self.node);
        let changed: i64 = if add {
            conn.sadd(&record, &member).await?
        } else {
            conn.srem(&record, &member).await?
        };
        if changed == 0 {
            return Ok(false);
        }
        count_move(&mut conn, add, self.keys.presence(channel), user).await
    }

    /// Records (or forgets) that `user` has a connection on this node, in the user's set of
    /// nodes (what direct messages are sent to).
    pub(super) async fn count_online(&self, add: bool, user: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        if add {
            let _: i64 = conn.sadd(self.keys.node_users(&self.node), user).await?;
            let _: i64 = conn.sadd(self.keys.online(user), &self.node).await?;
        } else {
            let _: i64 = conn.srem(self.keys.online(user), &self.node).await?;
            let _: i64 = conn.srem(self.keys.node_users(&self.node), user).await?;
        }
        Ok(())
    }
}

/// Moves `field` of the counts hash `counts` by one; true when it crossed zero.
async fn count_move(
    conn: &mut super::Conn,
    add: bool,
    counts: String,
    field: &str,
) -> redis::RedisResult<bool> {
    if add {
        let count: i64 = conn.hincr(counts, field, 1).await?;
        Ok(count == 1)
    } else {
        let gone: i64 = scripts::COUNT_DOWN
            .key(counts)
            .arg(field)
            .invoke_async(conn)
            .await?;
        Ok(gone == 1)
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
    let () = redis::cmd("SET")
        .arg(shared.keys.alive(&shared.node))
        .arg(1)
        .arg("PX")
        .arg(NODE_TTL.as_millis() as u64)
        .query_async(&mut conn)
        .await?;
    let added: i64 = conn
        .zadd(shared.keys.nodes(), &shared.node, now_ms())
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
        reap(shared, &node).await?;
    }
    Ok(())
}

/// Forgets everything a dead node held: its presence (announcing `user_left` where no node
/// holds the user any more) and its online users, then the node itself. Each member is removed
/// from the node's record before its count moves, so two reapers never count one twice.
async fn reap(shared: &Shared, node: &str) -> redis::RedisResult<()> {
    let mut conn = shared.conn.clone();
    let keys = &shared.keys;
    let record = keys.node_presence(node);
    let members: Vec<String> = conn.smembers(&record).await?;
    let mut gone = 0;
    for member in members {
        let Some((channel, user)) = member.split_once('\n') else {
            continue;
        };
        let removed: i64 = conn.srem(&record, &member).await?;
        if removed == 1 && count_move(&mut conn, false, keys.presence(channel), user).await? {
            gone += 1;
            let username: Option<String> = conn.get(keys.name(user)).await?;
            let payload = Wire::left(channel, user, username.as_deref());
            shared.publish(keys.channel(channel), payload).await?;
        }
    }
    let users: Vec<String> = conn.smembers(keys.node_users(node)).await?;
    for user in users {
        let _: i64 = conn.srem(keys.online(&user), node).await?;
    }
    let _: i64 = conn.del(keys.node_users(node)).await?;
    let _: i64 = conn.del(&record).await?;
    let _: i64 = conn.zrem(keys.nodes(), node).await?;
    tracing::info!(%node, users = gone, "reaped a dead node");
    Ok(())
}

/// Writes this node's names, presence and online users again (after Redis came back, possibly
/// without its data, or after another node reaped this one). Idempotent: the node's own records
/// make a second write a no-op.
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
        let restored: bool = conn.set_nx(keys.name(&user), &name).await?;
        if restored {
            let lower = name.to_lowercase();
            let _: bool = conn.set_nx(keys.name_owner(&lower), &user).await?;
            let _: bool = conn.set_nx(keys.name_key(&user), &lower).await?;
        }
    }
    let users: Vec<String> = shared.local_users.lock().keys().cloned().collect();
    for user in users {
        shared.count_online(true, &user).await?;
    }
    Ok(())
}
