//! Node liveness (heartbeats, reaping dead nodes) and the per-node records behind presence and
//! online users.
//!
//! Presence is counted per channel in the channel's slot: a `user\nnode` pair and the user's
//! node count move together in one script, and repeating a step changes nothing. A node also
//! indexes what it holds in its own slot (`node-presence:{node}`, `node-users:{node}`), so that
//! the others can reap it when it dies; the index is written before a pair is added and after it
//! is removed, so it never misses one (an extra entry only makes the reaper do nothing). No
//! command touches two slots.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::wire::Wire;
use super::{Keys, Shared, scripts};
use crate::engine::now_ms;

/// A node is dead when its liveness key is older than this.
const NODE_TTL: Duration = Duration::from_secs(15);
/// How often a node renews its liveness and looks for dead nodes.
const HEARTBEAT: Duration = Duration::from_secs(5);

impl Shared {
    /// Records (or forgets) `user` in `channel` on this node, moving the user's node count in
    /// the channel. Returns whether the count crossed zero (first node in, last node out).
    pub(super) async fn count_presence(
        &self,
        add: bool,
        channel: &str,
        user: &str,
    ) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let index_entry = format!("{channel}\n{user}");
        let index = self.keys.node_presence(&self.node);
        if add {
            let _: i64 = conn.sadd(&index, &index_entry).await?;
            presence_move(&mut conn, &self.keys, true, channel, user, &self.node).await
        } else {
            let crossed =
                presence_move(&mut conn, &self.keys, false, channel, user, &self.node).await?;
            let _: i64 = conn.srem(&index, &index_entry).await?;
            Ok(crossed)
        }
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

/// Adds (or removes) the pair `user\nnode` in `channel` and moves the user's count with it, in
/// one script in the channel's slot; true when the count crossed zero.
async fn presence_move(
    conn: &mut super::Conn,
    keys: &Keys,
    add: bool,
    channel: &str,
    user: &str,
    node: &str,
) -> redis::RedisResult<bool> {
    let script = if add {
        &scripts::PRESENCE_ADD
    } else {
        &scripts::PRESENCE_REMOVE
    };
    let crossed: i64 = script
        .key(keys.presence_nodes(channel))
        .key(keys.presence(channel))
        .arg(format!("{user}\n{node}"))
        .arg(user)
        .invoke_async(conn)
        .await?;
    Ok(crossed == 1)
}

/// Renews this node's liveness and reaps nodes that stopped beating.
pub(super) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        shared.forget_quiet_channels();
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
/// holds the user any more) and its online users, then the node itself. Every step can be
/// repeated (by another reaper, or after an error) without counting twice.
async fn reap(shared: &Shared, node: &str) -> redis::RedisResult<()> {
    let mut conn = shared.conn.clone();
    let keys = &shared.keys;
    let index = keys.node_presence(node);
    let entries: Vec<String> = conn.smembers(&index).await?;
    let mut gone = 0;
    for entry in entries {
        let Some((channel, user)) = entry.split_once('\n') else {
            continue;
        };
        if presence_move(&mut conn, keys, false, channel, user, node).await? {
            gone += 1;
            let username: Option<String> = conn.get(keys.name(user)).await?;
            let payload = Wire::left(channel, user, username.as_deref());
            shared.publish(keys.channel(channel), payload).await?;
        }
        let _: i64 = conn.srem(&index, &entry).await?;
    }
    let users: Vec<String> = conn.smembers(keys.node_users(node)).await?;
    for user in users {
        let _: i64 = conn.srem(keys.online(&user), node).await?;
        let _: i64 = conn.srem(keys.node_users(node), &user).await?;
    }
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
