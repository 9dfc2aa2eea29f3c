//! The Redis engine: stateless nodes sharing channels, names, presence and history through one
//! Redis or a Redis Cluster. Channel history lives in a capped stream per channel; a message is
//! appended and published in one script, so its id is the stream id; a node sends those scripts
//! in batches ([`batches`]). Each node receives the
//! channels it has local members in: with one Redis on one classic pub/sub connection
//! ([`listener`]), on a cluster with sharded pub/sub on the master owning each channel's slot
//! ([`sharded`]). After an outage, a failover or a slot migration it subscribes again and
//! replays from the streams what it missed ([`subscriptions`]).

mod audit;
mod batches;
mod blocks;
mod conn;
mod entries;
mod guests;
mod keys;
mod listener;
mod messages;
mod migrate;
mod moderation;
mod names;
mod nodes;
mod presence;
mod scripts;
mod sharded;
mod subscriptions;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use protocol::{BroadcastMessage, ChatMessage, DirectMessage};
use redis::AsyncCommands;
use redis::aio::PubSubSink;
use tokio_util::sync::CancellationToken;

pub use conn::RedisTarget;
pub use guests::RedisGuestStore;
pub use keys::Keys;

use super::{
    Announcement, Broker, DeliverySink, EngineError, History, HistoryQuery, NewMessage, NodeInfo,
};
use conn::Conn;
use sharded::Sharded;
use subscriptions::{Subscription, Subscriptions};
use wire::Wire;

/// Longest wait for a pub/sub command before the connection counts as broken.
const PUBSUB_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the Redis engine.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One Redis or a cluster.
    pub target: RedisTarget,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Messages kept per channel.
    pub history_size: usize,
    /// Oldest message kept.
    pub history_max_age: Duration,
    /// Replicas that must confirm a message before it is acknowledged (`WAIT`); 0 acknowledges
    /// once the master has it.
    pub wait_replicas: u32,
    /// Longest wait for those replicas.
    pub wait_timeout: Duration,
    /// How long a node holds a publish so that others join its batch (0: each goes alone).
    pub publish_linger: Duration,
}

/// Engine state shared with the background tasks.
pub(crate) struct Shared {
    keys: Keys,
    node: String,
    conn: Conn,
    /// One Redis: the client of the classic pub/sub connection.
    client: Option<redis::Client>,
    /// A cluster: the sharded subscriptions.
    sharded: Option<Sharded>,
    /// With a publish linger or `--redis-wait-replicas`: publishes go in batches.
    batches: Option<Arc<batches::Batches>>,
    sink: Arc<dyn DeliverySink>,
    /// One Redis: the pub/sub connection's command half; `None` while reconnecting.
    pubsub: tokio::sync::Mutex<Option<PubSubSink>>,
    /// Channels this node must receive, with the newest message id delivered (for replay).
    subscribed: Mutex<Subscriptions>,
    /// Local connections per user (the node counts once in Redis).
    local_users: Mutex<HashMap<String, usize>>,
    /// Names of users connected here: what their messages carry (no Redis read per message),
    /// kept current by the name changes on the bus, and re-asserted after a Redis restart.
    local_names: Mutex<HashMap<String, String>>,
    /// `local_names` is current: false from a bus outage until the names are read again.
    names_fresh: AtomicBool,
    /// When this node last had each channel's stream trimmed (see [`messages`]).
    maintained: Mutex<HashMap<String, std::time::Instant>>,
    /// (channel, user) pairs this node holds presence for, re-asserted after a Redis restart.
    local_presence: Mutex<std::collections::HashSet<(String, String)>>,
    pubsub_up: AtomicBool,
    commands_up: AtomicBool,
    settings: RedisSettings,
}

/// The Redis engine of one node. Dropping it stops its background tasks.
pub struct RedisEngine {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

fn unavailable(error: redis::RedisError) -> EngineError {
    EngineError::Unavailable(error.to_string())
}

impl RedisEngine {
    /// Connects to Redis (or the cluster) and starts receiving and the heartbeat.
    pub async fn connect(
        settings: RedisSettings,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<Self, EngineError> {
        let conn = Conn::connect(&settings.target).await.map_err(unavailable)?;
        let keys = Keys::new(&settings.prefix);
        if !settings.target.is_cluster() {
            // A Redis written by an older version: carry its data over once.
            migrate::upgrade(&conn, &keys).await.map_err(unavailable)?;
        }
        let node = uuid::Uuid::new_v4().to_string();
        let (client, sharded) = match &settings.target {
            RedisTarget::Single(url) => (
                Some(redis::Client::open(url.as_str()).map_err(unavailable)?),
                None,
            ),
            RedisTarget::Cluster(seeds) => {
                let (sharded, pushes) = Sharded::connect(seeds).await.map_err(unavailable)?;
                (None, Some((sharded, pushes)))
            }
        };
        let (sharded, pushes) = sharded.unzip();
        let batches = if settings.wait_replicas > 0 || !settings.publish_linger.is_zero() {
            let batches = batches::Batches::new(
                settings.target.clone(),
                conn.clone(),
                batches::BatchSettings {
                    linger: settings.publish_linger,
                    replicas: settings.wait_replicas,
                    timeout: settings.wait_timeout,
                },
            )
            .map_err(unavailable)?;
            Some(Arc::new(batches))
        } else {
            None
        };
        let shared = Arc::new(Shared {
            keys,
            node,
            batches,
            conn,
            client,
            sharded,
            sink,
            pubsub: tokio::sync::Mutex::new(None),
            subscribed: Mutex::default(),
            local_users: Mutex::default(),
            local_presence: Mutex::default(),
            local_names: Mutex::default(),
            names_fresh: AtomicBool::new(true),
            maintained: Mutex::default(),
            pubsub_up: AtomicBool::new(false),
            commands_up: AtomicBool::new(true),
            settings,
        });
        let stop = CancellationToken::new();
        match (&shared.sharded, pushes) {
            (Some(sharded), Some(pushes)) => {
                sharded::attach(&shared, &pushes, stop.clone());
                let control = [shared.keys.inbox(&shared.node), shared.keys.bus()];
                let subscribing = sharded.subscribe_control(&control);
                if let Err(error) = tokio::time::timeout(Duration::from_secs(5), subscribing)
                    .await
                    .unwrap_or_else(|_| Err(sharded::timed_out()))
                {
                    stop.cancel();
                    return Err(EngineError::Unavailable(format!(
                        "cannot subscribe on the Redis Cluster: {error}"
                    )));
                }
                shared.pubsub_up.store(true, Ordering::Release);
            }
            _ => {
                let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
                tokio::spawn(listener::run(shared.clone(), stop.clone(), connected_tx));
                // Serve only once the node channels are subscribed (or fail if Redis is down).
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(5), connected_rx).await,
                    Ok(Ok(()))
                ) {
                    stop.cancel();
                    return Err(EngineError::Unavailable(
                        "cannot open the Redis pub/sub connection".into(),
                    ));
                }
            }
        }
        tokio::spawn(nodes::heartbeat(shared.clone(), stop.clone()));
        tracing::info!(
            node = %shared.node,
            prefix = %shared.keys.prefix(),
            redis = %shared.settings.target.describe(),
            "Redis engine ready"
        );
        Ok(Self { shared, stop })
    }

    /// Guest accounts shared by every node of this deployment.
    pub fn guest_store(&self) -> RedisGuestStore {
        RedisGuestStore::new(self.shared.conn.clone(), self.shared.keys.clone())
    }

    /// This node's id in Redis.
    pub fn node_id(&self) -> &str {
        &self.shared.node
    }

    fn conn(&self) -> Conn {
        self.shared.conn.clone()
    }
}

impl Shared {
    /// `PUBLISH` with one Redis, `SPUBLISH` (to the slot's master) on a cluster.
    fn publish_command(&self) -> &'static str {
        if self.sharded.is_some() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Publishes `payload` on the pub/sub channel `channel`.
    async fn publish(&self, channel: String, payload: String) -> redis::RedisResult<()> {
        let _: i64 = redis::cmd(self.publish_command())
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl Broker for RedisEngine {
    async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        if let Some(sharded) = &self.shared.sharded {
            // From the stream's tail now: the replay after the confirmation delivers whatever
            // is published before the subscription takes effect.
            let tail = self.shared.tail(channel).await?;
            self.shared
                .subscribed
                .lock()
                .insert(channel.to_owned(), Subscription::held_after(tail));
            let key = self.shared.keys.channel(channel);
            if let Err(error) = sharded.subscribe(&key, channel).await {
                self.shared.subscribed.lock().remove(channel);
                return Err(unavailable(error));
            }
            return Ok(());
        }
        // Registered before SUBSCRIBE, so that nothing delivered right after it is dropped.
        self.shared
            .subscribed
            .lock()
            .entry(channel.to_owned())
            .or_insert_with(Subscription::open);
        let result = async {
            let mut pubsub = self.shared.pubsub.lock().await;
            let sink = pubsub
                .as_mut()
                .ok_or_else(|| EngineError::Unavailable("Redis pub/sub is reconnecting".into()))?;
            let subscribing = sink.subscribe(self.shared.keys.channel(channel));
            match tokio::time::timeout(PUBSUB_TIMEOUT, subscribing).await {
                Ok(result) => result.map_err(unavailable),
                Err(_) => {
                    // A connection that does not answer: drop it, the listener reconnects.
                    *pubsub = None;
                    Err(EngineError::Unavailable(
                        "Redis pub/sub does not answer".into(),
                    ))
                }
            }
        }
        .await;
        if let Err(error) = result {
            self.shared.subscribed.lock().remove(channel);
            return Err(error);
        }
        // The replay point after an outage: the stream's tail now.
        let tail = match self.shared.tail(channel).await {
            Ok(tail) => tail,
            Err(error) => {
                let _ = self.unsubscribe(channel).await;
                return Err(error);
            }
        };
        let mut subscribed = self.shared.subscribed.lock();
        if let Some(subscription) = subscribed.get_mut(channel) {
            subscription.last = Some(subscription.last.map_or(tail, |l| l.max(tail)));
        }
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.shared.subscribed.lock().remove(channel);
        if let Some(sharded) = &self.shared.sharded {
            return sharded
                .unsubscribe(&self.shared.keys.channel(channel))
                .await
                .map_err(unavailable);
        }
        let mut pubsub = self.shared.pubsub.lock().await;
        if let Some(sink) = pubsub.as_mut() {
            let unsubscribing = sink.unsubscribe(self.shared.keys.channel(channel));
            match tokio::time::timeout(PUBSUB_TIMEOUT, unsubscribing).await {
                Ok(result) => result.map_err(unavailable)?,
                Err(_) => {
                    // Reconnecting subscribes only what is still wanted, which is the fix.
                    *pubsub = None;
                    return Err(EngineError::Unavailable(
                        "Redis pub/sub does not answer".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn publish(&self, new: NewMessage) -> Result<Arc<ChatMessage>, EngineError> {
        self.shared.publish_message(new).await
    }

    async fn history(&self, channel: &str, query: HistoryQuery) -> Result<History, EngineError> {
        self.shared.read_history(channel, query).await
    }

    async fn announce(&self, announcement: Announcement) -> Result<(), EngineError> {
        let (channel, payload) = match &announcement {
            Announcement::UserJoined(change) => (
                &change.channel,
                Wire::joined(&change.channel, &change.user_id, change.username.as_deref()),
            ),
            Announcement::UserLeft(change) => (
                &change.channel,
                Wire::left(&change.channel, &change.user_id, change.username.as_deref()),
            ),
            // Pub/sub only: a typing indicator is never written to the channel's stream.
            Announcement::Typing(typing) => (&typing.channel, Wire::typing(typing)),
        };
        self.shared
            .publish(self.shared.keys.channel(channel), payload)
            .await
            .map_err(unavailable)
    }

    async fn user_online(&self, user_id: &str) -> Result<(), EngineError> {
        let first_here = {
            let mut local = self.shared.local_users.lock();
            let count = local.entry(user_id.to_owned()).or_default();
            *count += 1;
            *count == 1
        };
        if first_here {
            self.shared
                .count_online(true, user_id)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn user_offline(&self, user_id: &str) -> Result<(), EngineError> {
        let last_here = {
            let mut local = self.shared.local_users.lock();
            match local.get_mut(user_id) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    local.remove(user_id);
                    self.shared.local_names.lock().remove(user_id);
                    true
                }
                None => false,
            }
        };
        if last_here {
            self.shared
                .count_online(false, user_id)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn send_direct(&self, to: &str, message: DirectMessage) -> Result<bool, EngineError> {
        let nodes: Vec<String> = self
            .conn()
            .smembers(self.shared.keys.online(to))
            .await
            .map_err(unavailable)?;
        if nodes.is_empty() {
            return Ok(false);
        }
        // To the inbox of each node the recipient is connected to, and nowhere else.
        let payload = Wire::direct(to, &message);
        for node in nodes {
            self.shared
                .publish(self.shared.keys.inbox(&node), payload.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(true)
    }

    async fn broadcast(&self, message: BroadcastMessage) -> Result<(), EngineError> {
        self.shared
            .publish(self.shared.keys.bus(), Wire::broadcast(&message))
            .await
            .map_err(unavailable)
    }

    async fn announce_node(&self, mut info: NodeInfo) -> Result<(), EngineError> {
        info.node = self.shared.node.clone();
        self.shared
            .publish(self.shared.keys.bus(), Wire::node(&info))
            .await
            .map_err(unavailable)
    }

    async fn ready(&self) -> bool {
        if !self.shared.pubsub_up.load(Ordering::Acquire) {
            return false;
        }
        let ok = tokio::time::timeout(Duration::from_millis(800), self.shared.conn.ping())
            .await
            .unwrap_or(false);
        self.shared.commands_up.store(ok, Ordering::Release);
        ok
    }
}
