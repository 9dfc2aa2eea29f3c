//! The Redis engine: stateless nodes sharing channels, names, presence and history through one
//! Redis. Channel history lives in a capped stream per channel; a message is appended and
//! published in one script, so its id is the stream id. Each node keeps one pub/sub connection
//! ([`listener`]), subscribed to the channels it has local members in; after a Redis outage it
//! resubscribes and replays from the streams what it missed.

mod blocks;
mod entries;
mod guests;
mod keys;
mod listener;
mod nodes;
mod scripts;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use protocol::{BroadcastMessage, ChatMessage, DirectMessage, MessageId, PresenceUser};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio_util::sync::CancellationToken;

pub use guests::RedisGuestStore;
pub use keys::Keys;

use super::{
    BlockOutcome, BlockSnapshot, Delivery, DeliverySink, Engine, EngineError, History,
    HistoryQuery, NewMessage, now_ms,
};
use crate::moderation::{Sanction, Standing};
use entries::{Entry, entry_message, parse_id};
use wire::Wire;

/// Longest wait for a pub/sub command before the connection counts as broken.
const PUBSUB_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the Redis engine.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Messages kept per channel.
    pub history_size: usize,
    /// Oldest message kept.
    pub history_max_age: Duration,
}

/// Engine state shared with the background tasks.
pub(crate) struct Shared {
    keys: Keys,
    node: String,
    conn: ConnectionManager,
    client: redis::Client,
    sink: Arc<dyn DeliverySink>,
    /// The pub/sub connection's command half; `None` while reconnecting.
    pubsub: tokio::sync::Mutex<Option<PubSubSink>>,
    /// Channels this node must receive, with the newest message id delivered (for replay).
    subscribed: Mutex<HashMap<String, Option<MessageId>>>,
    /// Local connections per user (the node counts once in Redis).
    local_users: Mutex<HashMap<String, usize>>,
    /// Names of users connected here, re-asserted after a Redis restart.
    local_names: Mutex<HashMap<String, String>>,
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
    /// Connects to Redis and starts the pub/sub listener and the heartbeat.
    pub async fn connect(
        settings: RedisSettings,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<Self, EngineError> {
        let client = redis::Client::open(settings.url.as_str()).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let shared = Arc::new(Shared {
            keys: Keys::new(&settings.prefix),
            node: uuid::Uuid::new_v4().to_string(),
            conn,
            client,
            sink,
            pubsub: tokio::sync::Mutex::new(None),
            subscribed: Mutex::default(),
            local_users: Mutex::default(),
            local_presence: Mutex::default(),
            local_names: Mutex::default(),
            pubsub_up: AtomicBool::new(false),
            commands_up: AtomicBool::new(true),
            settings,
        });
        let stop = CancellationToken::new();
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(listener::run(shared.clone(), stop.clone(), connected_tx));
        tokio::spawn(nodes::heartbeat(shared.clone(), stop.clone()));
        // Serve only once the node channels are subscribed (or fail if Redis is down now).
        match tokio::time::timeout(Duration::from_secs(5), connected_rx).await {
            Ok(Ok(())) => {}
            _ => {
                stop.cancel();
                return Err(EngineError::Unavailable(
                    "cannot open the Redis pub/sub connection".into(),
                ));
            }
        }
        tracing::info!(node = %shared.node, prefix = %shared.keys.prefix(), "Redis engine ready");
        Ok(Self { shared, stop })
    }

    /// Guest accounts shared by every node of this deployment.
    pub fn guest_store(&self) -> RedisGuestStore {
        RedisGuestStore::new(self.shared.conn.clone(), self.shared.keys.guests())
    }

    /// This node's id in Redis.
    pub fn node_id(&self) -> &str {
        &self.shared.node
    }

    fn conn(&self) -> ConnectionManager {
        self.shared.conn.clone()
    }

    async fn publish_raw(&self, channel: String, payload: String) -> Result<(), EngineError> {
        let _: i64 = self
            .conn()
            .publish(channel, payload)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl Engine for RedisEngine {
    async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        // Registered before SUBSCRIBE, so that nothing delivered right after it is dropped.
        self.shared
            .subscribed
            .lock()
            .entry(channel.to_owned())
            .or_insert(None);
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
        let tail: Vec<Entry> = match self
            .conn()
            .xrevrange_count(self.shared.keys.history(channel), "+", "-", 1)
            .await
        {
            Ok(tail) => tail,
            Err(error) => {
                let _ = self.unsubscribe(channel).await;
                return Err(unavailable(error));
            }
        };
        if let Some(tail) = tail
            .into_iter()
            .next()
            .map(|(id, _)| parse_id(&id))
            .transpose()?
        {
            let mut subscribed = self.shared.subscribed.lock();
            if let Some(last) = subscribed.get_mut(channel) {
                *last = Some(last.map_or(tail, |l| l.max(tail)));
            }
        }
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.shared.subscribed.lock().remove(channel);
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
        let settings = &self.shared.settings;
        let id: String = scripts::PUBLISH
            .key(self.shared.keys.history(&new.channel))
            .key(self.shared.keys.channel(&new.channel))
            .key(self.shared.keys.trimmed(&new.channel))
            .arg(settings.history_size.max(1))
            .arg(settings.history_max_age.as_millis() as u64)
            .arg(&new.user_id)
            .arg(&new.username)
            .arg(&new.message)
            .arg(&new.channel)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let id = parse_id(&id)?;
        Ok(Arc::new(new.stored(id)))
    }

    async fn history(&self, channel: &str, query: HistoryQuery) -> Result<History, EngineError> {
        // Bounds Redis cannot express (and that hold nothing anyway).
        match query {
            HistoryQuery::Before { before, .. } if before <= MessageId::new(0, 0) => {
                return Ok(History::default());
            }
            HistoryQuery::Since { after, .. } if after == MessageId::new(u64::MAX, u64::MAX) => {
                return Ok(History::default());
            }
            _ => {}
        }
        let key = self.shared.keys.history(channel);
        let mut conn = self.conn();
        let (newest_first, gap_after): (Vec<Entry>, Option<MessageId>) = match query {
            HistoryQuery::Last { limit } => (
                conn.xrevrange_count(&key, "+", "-", limit.saturating_add(1))
                    .await
                    .map_err(unavailable)?,
                None,
            ),
            HistoryQuery::Before { before, limit } => (
                conn.xrevrange_count(&key, format!("({before}"), "-", limit.saturating_add(1))
                    .await
                    .map_err(unavailable)?,
                None,
            ),
            HistoryQuery::Since { after, limit } => (
                conn.xrevrange_count(&key, "+", format!("({after}"), limit.saturating_add(1))
                    .await
                    .map_err(unavailable)?,
                Some(after),
            ),
        };
        let limit = match query {
            HistoryQuery::Last { limit }
            | HistoryQuery::Before { limit, .. }
            | HistoryQuery::Since { limit, .. } => limit,
        };
        let truncated = newest_first.len() > limit;
        let mut messages = newest_first
            .into_iter()
            .take(limit)
            .map(|entry| entry_message(channel, entry))
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        let gap = match gap_after {
            None => false,
            Some(after) => {
                let trimmed: Option<String> = conn
                    .get(self.shared.keys.trimmed(channel))
                    .await
                    .map_err(unavailable)?;
                let trimmed = trimmed.and_then(|id| id.parse::<MessageId>().ok());
                truncated || trimmed.is_some_and(|t| t > after)
            }
        };
        Ok(History {
            messages,
            more: truncated && gap_after.is_none(),
            gap,
        })
    }

    async fn set_name(&self, user_id: &str, name: &str, unique: bool) -> Result<(), EngineError> {
        let keys = &self.shared.keys;
        let done: i64 = scripts::SET_NAME
            .key(keys.names())
            .key(keys.name_owners())
            .key(keys.name_keys())
            .arg(user_id)
            .arg(name)
            .arg(name.to_lowercase())
            .arg(if unique { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if done == 1 {
            self.shared
                .local_names
                .lock()
                .insert(user_id.to_owned(), name.to_owned());
            Ok(())
        } else {
            Err(EngineError::NameTaken(name.to_owned()))
        }
    }

    async fn name(&self, user_id: &str) -> Result<Option<String>, EngineError> {
        let mut conn = self.conn();
        let name: Option<String> = conn
            .hget(self.shared.keys.names(), user_id)
            .await
            .map_err(unavailable)?;
        if name.is_none() {
            // Redis came back without its data: the name of a user connected here is known.
            let cached = self.shared.local_names.lock().get(user_id).cloned();
            if let Some(cached) = cached {
                let _: bool = conn
                    .hset_nx(self.shared.keys.names(), user_id, &cached)
                    .await
                    .map_err(unavailable)?;
                return Ok(Some(cached));
            }
        }
        if let Some(name) = &name
            && self.shared.local_users.lock().contains_key(user_id)
        {
            self.shared
                .local_names
                .lock()
                .insert(user_id.to_owned(), name.clone());
        }
        Ok(name)
    }

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
        let names: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.shared.keys.names())
            .arg(&users)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(users
            .into_iter()
            .zip(names)
            .map(|(user_id, username)| PresenceUser { user_id, username })
            .collect())
    }

    async fn announce(&self, delivery: Delivery) -> Result<(), EngineError> {
        let (channel, payload) = match &delivery {
            Delivery::UserJoined(change) => (
                &change.channel,
                Wire::joined(&change.channel, &change.user_id, change.username.as_deref()),
            ),
            Delivery::UserLeft(change) => (
                &change.channel,
                Wire::left(&change.channel, &change.user_id, change.username.as_deref()),
            ),
            // Pub/sub only: a typing indicator is never written to the channel's stream.
            Delivery::Typing(typing) => (&typing.channel, Wire::typing(typing)),
            _ => return Ok(()),
        };
        self.publish_raw(self.shared.keys.channel(channel), payload)
            .await
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
        let online: Option<i64> = self
            .conn()
            .hget(self.shared.keys.online(), to)
            .await
            .map_err(unavailable)?;
        if online.unwrap_or(0) <= 0 {
            return Ok(false);
        }
        self.publish_raw(self.shared.keys.direct(), Wire::direct(to, &message))
            .await?;
        Ok(true)
    }

    async fn broadcast(&self, message: BroadcastMessage) -> Result<(), EngineError> {
        self.publish_raw(self.shared.keys.broadcast(), Wire::broadcast(&message))
            .await
    }

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
        self.publish_raw(keys.broadcast(), Wire::sanction(user_id, &sanction))
            .await
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

    async fn ready(&self) -> bool {
        if !self.shared.pubsub_up.load(Ordering::Acquire) {
            return false;
        }
        let ping = async {
            let pong: redis::RedisResult<String> =
                redis::cmd("PING").query_async(&mut self.conn()).await;
            pong.is_ok()
        };
        let ok = tokio::time::timeout(Duration::from_millis(800), ping)
            .await
            .unwrap_or(false);
        self.shared.commands_up.store(ok, Ordering::Release);
        ok
    }
}
