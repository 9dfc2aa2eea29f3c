//! Sharded pub/sub on a Redis Cluster: the node holds one subscription connection per master
//! (a RESP3 cluster connection whose pushes come here) and subscribes each chat channel with
//! SSUBSCRIBE on the master owning its slot, its own inbox and the deployment's bus likewise.
//!
//! It follows the cluster. A slot that moves away (`sunsubscribe` pushed by Redis) or a master
//! that goes away (a disconnection) marks the subscriptions lost; a keeper task subscribes them
//! again wherever their slots live now (MOVED is followed by the cluster connection), and every
//! confirmation starts a replay from the channel's stream, so what was published meanwhile is
//! delivered once, in order ([`super::subscriptions`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::conn::{COMMAND_TIMEOUT, cluster_builder};
use super::{Shared, listener};

/// How often lost subscriptions are tried again.
const KEEPER_INTERVAL: Duration = Duration::from_millis(250);

/// What a shard channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Carries {
    /// A chat channel (replayed from its stream after every confirmation).
    Channel(String),
    /// This node's inbox or the bus (not kept: nothing to replay).
    Control,
}

/// The cluster subscriptions of one node.
pub(super) struct Sharded {
    conn: ClusterConnection,
    /// Shard channels wanted, by pub/sub channel name.
    wanted: Mutex<HashMap<String, Carries>>,
    /// Wanted shard channels not known to be subscribed now.
    lost: Mutex<HashSet<String>>,
    wake: Notify,
}

/// Where the pushes of the subscription connection go; set once the engine exists.
type PushTarget = Arc<OnceLock<Weak<Shared>>>;

impl Sharded {
    /// Opens the subscription connection to the cluster at `seeds`. Pushes reach the engine
    /// once [`Sharded::attach`] named it.
    pub(super) async fn connect(seeds: &[String]) -> redis::RedisResult<(Self, PushTarget)> {
        let target: PushTarget = Arc::default();
        let pushes = target.clone();
        let client = cluster_builder(seeds)
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(move |info: PushInfo| -> Result<(), ()> {
                if let Some(shared) = pushes.get().and_then(Weak::upgrade) {
                    on_push(&shared, info);
                }
                Ok(())
            })
            .build()?;
        let conn = client.get_async_connection().await?;
        let sharded = Self {
            conn,
            wanted: Mutex::default(),
            lost: Mutex::default(),
            wake: Notify::new(),
        };
        Ok((sharded, target))
    }

    /// Subscribes this node's inbox and the bus (before the node serves).
    pub(super) async fn subscribe_control(&self, channels: &[String]) -> redis::RedisResult<()> {
        {
            let mut wanted = self.wanted.lock();
            for channel in channels {
                wanted.insert(channel.clone(), Carries::Control);
            }
        }
        let mut conn = self.conn.clone();
        // One by one: shard channels of different slots cannot share a command.
        for channel in channels {
            conn.ssubscribe(channel).await?;
        }
        Ok(())
    }

    /// Subscribes the shard channel `key` of the chat channel `channel`.
    pub(super) async fn subscribe(&self, key: &str, channel: &str) -> redis::RedisResult<()> {
        self.wanted
            .lock()
            .insert(key.to_owned(), Carries::Channel(channel.to_owned()));
        let mut conn = self.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, conn.ssubscribe(key)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.forget(key).await;
                Err(error)
            }
            Err(_) => {
                self.forget(key).await;
                Err(timed_out())
            }
        }
    }

    /// Gives up a shard channel whose subscription failed; unsubscribes, best effort, in case
    /// the subscription took effect after all (a reply lost or late).
    async fn forget(&self, key: &str) {
        self.wanted.lock().remove(key);
        self.lost.lock().remove(key);
        let mut conn = self.conn.clone();
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, conn.sunsubscribe(key)).await;
    }

    /// Marks a chat channel's shard channel lost (its replay gave up): it is subscribed again,
    /// and the confirmation starts a new replay.
    pub(super) fn lose_channel(&self, key: &str) {
        self.lose([key.to_owned()]);
    }

    /// Unsubscribes the shard channel `key`.
    pub(super) async fn unsubscribe(&self, key: &str) -> redis::RedisResult<()> {
        self.wanted.lock().remove(key);
        self.lost.lock().remove(key);
        let mut conn = self.conn.clone();
        tokio::time::timeout(COMMAND_TIMEOUT, conn.sunsubscribe(key))
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    fn lose(&self, keys: impl IntoIterator<Item = String>) {
        let wanted = self.wanted.lock();
        let mut lost = self.lost.lock();
        lost.extend(keys.into_iter().filter(|key| wanted.contains_key(key)));
        if !lost.is_empty() {
            self.wake.notify_one();
        }
    }
}

pub(super) fn timed_out() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Io,
        "the Redis Cluster does not answer a subscription",
    ))
}

/// Makes `shared` receive the subscription connection's pushes and starts the keeper.
pub(super) fn attach(shared: &Arc<Shared>, target: &PushTarget, stop: CancellationToken) {
    let _ = target.set(Arc::downgrade(shared));
    tokio::spawn(keeper(shared.clone(), stop));
}

fn sharded(shared: &Shared) -> &Sharded {
    shared
        .sharded
        .as_ref()
        .expect("sharded pub/sub runs only in cluster mode")
}

/// Subscribes lost shard channels again until none is lost, and keeps `pubsub_up` in step. A
/// channel counts as subscribed again only when Redis pushes the confirmation ([`on_push`]):
/// a command's success can be stale (the connection dropped right after) or misattributed.
async fn keeper(shared: Arc<Shared>, stop: CancellationToken) {
    let sharded = sharded(&shared);
    let mut was_healthy = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = sharded.wake.notified() => {}
            () = tokio::time::sleep(KEEPER_INTERVAL) => {}
        }
        let lost: Vec<String> = {
            let wanted = sharded.wanted.lock();
            let mut lost = sharded.lost.lock();
            lost.retain(|key| wanted.contains_key(key));
            lost.iter().cloned().collect()
        };
        if lost.is_empty() {
            if !was_healthy {
                tracing::info!("Redis Cluster subscriptions restored");
            }
            was_healthy = true;
            shared.pubsub_up.store(true, Ordering::Release);
            continue;
        }
        was_healthy = false;
        shared.pubsub_up.store(false, Ordering::Release);
        // All at once: a master that does not answer must not hold up the others' channels.
        let attempts = lost.into_iter().map(|key| {
            let mut conn = sharded.conn.clone();
            async move {
                let subscribing = tokio::time::timeout(COMMAND_TIMEOUT, conn.ssubscribe(&key));
                if let Ok(Err(error)) = subscribing.await {
                    tracing::debug!(%error, key, "shard channel not subscribed yet");
                }
                // Left meanwhile: undo (the confirmation, if any, is then ignored).
                if !sharded.wanted.lock().contains_key(&key) {
                    let _ = tokio::time::timeout(COMMAND_TIMEOUT, conn.sunsubscribe(&key)).await;
                }
            }
        });
        futures_util::future::join_all(attempts).await;
    }
}

/// The first argument of a push as text (a channel name).
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

fn on_push(shared: &Arc<Shared>, info: PushInfo) {
    let sharded = sharded(shared);
    match info.kind {
        PushKind::SMessage => {
            // (Names and the rest of the bus are handled with the channel traffic.)
            if let Some(Value::BulkString(payload)) = info.data.get(1) {
                listener::handle(shared, payload);
            }
        }
        PushKind::SSubscribe => {
            let Some(key) = text(info.data.first()) else {
                return;
            };
            let carries = sharded.wanted.lock().get(&key).cloned();
            if carries.is_some() {
                sharded.lost.lock().remove(&key);
            }
            match carries {
                Some(Carries::Channel(channel)) => shared.begin_replay(&channel),
                Some(Carries::Control) if key == shared.keys.bus() => {
                    // Block lists and names changed while the bus was away were missed: read
                    // them again.
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        if let Err(error) = shared.reload_blocks().await {
                            tracing::warn!(%error, "could not reload block lists");
                        }
                        shared.reload_names().await;
                    });
                }
                _ => {}
            }
        }
        PushKind::SUnsubscribe => {
            // Sent by Redis when the slot moved away (a resharding, a failover); after our own
            // unsubscribe the channel is no longer wanted and this is ignored.
            if let Some(key) = text(info.data.first()) {
                if key == shared.keys.bus() {
                    shared.names_fresh.store(false, Ordering::Release);
                }
                tracing::info!(key, "Redis moved a shard channel away; subscribing again");
                sharded.lose([key]);
            }
        }
        PushKind::Disconnection => {
            tracing::warn!("a Redis Cluster subscription connection dropped; subscribing again");
            let keys: Vec<String> = sharded.wanted.lock().keys().cloned().collect();
            sharded.lose(keys);
            shared.pubsub_up.store(false, Ordering::Release);
            shared.names_fresh.store(false, Ordering::Release);
        }
        _ => {}
    }
}
