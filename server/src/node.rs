//! This node: the engine, the local hub, and the join/leave steps that keep them in agreement.

use std::sync::Arc;

use protocol::PresenceChange;

use crate::config::Limits;
use crate::engine::{Announcement, Engine, EngineError};
use crate::hub::{ConnHandle, Hub};
use crate::metrics::Metrics;

/// Everything a connection needs to serve its client.
pub struct Node {
    /// Shared state across nodes.
    pub engine: Engine,
    /// Local connections and channel members.
    pub hub: Arc<Hub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Request limits.
    pub limits: Limits,
    /// Names must be unique across users.
    pub unique_names: bool,
    /// Who may join and send where.
    pub channels: Arc<dyn crate::policy::ChannelPolicy>,
    /// Reviews messages and names (word filter or a game's own).
    pub moderator: Arc<dyn crate::moderation::Moderator>,
}

impl Node {
    /// Makes `conn` a local member of `channel`: subscribes the node when it is the first local
    /// member, and announces `user_joined` when the user was present nowhere before.
    pub async fn join(
        &self,
        channel: &str,
        conn: &ConnHandle,
        username: Option<&str>,
    ) -> Result<(), EngineError> {
        loop {
            let entry = self.hub.entry(channel);
            let mut state = entry.transition.lock().await;
            if state.retired {
                // The last member left while we waited: use the fresh entry.
                continue;
            }
            if !state.subscribed {
                if let Err(error) = self.engine.broker.subscribe(channel).await {
                    if entry.is_empty() {
                        state.retired = true;
                        self.hub.retire(channel, &entry);
                    }
                    return Err(error);
                }
                state.subscribed = true;
            }
            let user_connections = entry.insert(conn);
            if user_connections == 1 {
                match self
                    .engine
                    .presence
                    .presence_add(channel, &conn.user_id)
                    .await
                {
                    Ok(true) => {
                        let change = presence_change(channel, conn, username);
                        if let Err(error) = self
                            .engine
                            .broker
                            .announce(Announcement::UserJoined(change))
                            .await
                        {
                            tracing::warn!(%error, channel, "could not announce user_joined");
                        }
                    }
                    Ok(false) => {}
                    Err(error) => {
                        entry.remove(conn);
                        if entry.is_empty() {
                            let _ = self.engine.broker.unsubscribe(channel).await;
                            state.subscribed = false;
                            state.retired = true;
                            self.hub.retire(channel, &entry);
                        }
                        return Err(error);
                    }
                }
            }
            return Ok(());
        }
    }

    /// Removes `conn` from `channel`: announces `user_left` when the user is now present nowhere,
    /// and unsubscribes the node when it was the last local member. Returns false when `conn`
    /// was not a member. Never fails: engine errors are logged, local state is always updated.
    pub async fn leave(&self, channel: &str, conn: &ConnHandle, username: Option<&str>) -> bool {
        let Some(entry) = self.hub.existing_entry(channel) else {
            return false;
        };
        let mut state = entry.transition.lock().await;
        let (removed, user_connections_left) = entry.remove(conn);
        if !removed {
            return false;
        }
        // What was queued for it from this channel is no longer its to receive.
        conn.outbox.forget_channel(channel);
        if user_connections_left == 0 {
            match self
                .engine
                .presence
                .presence_remove(channel, &conn.user_id)
                .await
            {
                Ok(true) => {
                    let change = presence_change(channel, conn, username);
                    if let Err(error) = self
                        .engine
                        .broker
                        .announce(Announcement::UserLeft(change))
                        .await
                    {
                        tracing::warn!(%error, channel, "could not announce user_left");
                    }
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, channel, "could not record leave"),
            }
        }
        if entry.is_empty() && !state.retired {
            // Unsubscribe while the entry is still the hub's: a joiner waits on its lock and
            // then subscribes afresh, never racing this unsubscribe.
            if state.subscribed {
                state.subscribed = false;
                if let Err(error) = self.engine.broker.unsubscribe(channel).await {
                    tracing::warn!(%error, channel, "could not unsubscribe");
                }
            }
            state.retired = true;
            self.hub.retire(channel, &entry);
        }
        true
    }
}

fn presence_change(
    channel: &str,
    conn: &ConnHandle,
    username: Option<&str>,
) -> Arc<PresenceChange> {
    Arc::new(PresenceChange {
        channel: channel.to_owned(),
        user_id: conn.user_id.to_string(),
        username: username.map(str::to_owned),
    })
}

/// How often a node reports itself to every node (the console's overview and its charts).
pub const REPORT_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Reports this node to every node (itself included) every `period`, while it runs.
pub async fn report_every(node: std::sync::Weak<Node>, period: std::time::Duration) {
    let started_ms = crate::engine::now_ms();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let Some(node) = node.upgrade() else { return };
        let report = node.report(started_ms).await;
        if let Err(error) = node.engine.broker.announce_node(report).await {
            tracing::debug!(%error, "could not report this node to the others");
        }
    }
}

impl Node {
    /// This node's report now (its `node` id is set by the engine).
    pub async fn report(&self, started_ms: u64) -> crate::engine::NodeInfo {
        crate::engine::NodeInfo {
            node: String::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_ms,
            sent_ms: crate::engine::now_ms(),
            connections: u64::try_from(self.metrics.connections.get()).unwrap_or(0),
            channels: self.hub.channel_count() as u64,
            messages: self.metrics.messages_published.get(),
            deliveries: self.metrics.frames_out.get(),
            engine_ready: self.engine.ready().await,
            refusals: self.metrics.refusals(),
            busiest: self.hub.busiest_channels(crate::engine::BUSIEST_CHANNELS),
        }
    }
}
