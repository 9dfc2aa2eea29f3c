//! The engine: everything server nodes share, in five parts along centrifuge's lines: traffic
//! between nodes with channel history ([`Broker`]), presence ([`PresenceManager`]), user data
//! ([`UserStore`]; guests are the identity's `GuestStore`), moderation with block lists
//! ([`ModerationStore`]) and the operators' audit log ([`AuditLog`]). A node holds one of each
//! in an [`Engine`].
//!
//! Who owns what: on Redis (one server or a Cluster) the [`RedisEngine`] owns every part. On one
//! node the in-process [`MemoryEngine`] owns traffic, history and presence, [`MemoryUsers`] the
//! names, [`MemoryModeration`] mutes, bans and block lists and [`MemoryAudit`] the audit log;
//! with the embedded database (the default, [`sqlite`]) each of them also writes what it keeps
//! to the database file, and the file holds the guests. A broker delivers everything published
//! — locally or from other nodes — to this node's [`DeliverySink`] (the
//! [`Hub`](crate::hub::Hub)), which fans it out to local connections.

pub mod audit;
mod memory;
mod node_info;
mod redis;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::moderation::{Sanction, Standing};
use protocol::{
    BroadcastMessage, ChatMessage, DirectMessage, MessageId, PresenceChange, PresenceUser,
    TypingUser,
};

pub use self::redis::{
    Keys as RedisKeys, RedisEngine, RedisGuestStore, RedisSettings, RedisTarget,
};
pub use audit::{AuditAction, AuditEntry, AuditLog};
pub use memory::{MemoryAudit, MemoryEngine, MemoryModeration, MemoryUsers, sweep_every};
pub use node_info::{BUSIEST_CHANNELS, ChannelLoad, NodeInfo};

/// An engine failure, reported to the client as `unavailable` / `name_taken`.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The shared backend cannot be reached; the request was not carried out.
    #[error("the chat backend is unavailable, try again shortly")]
    Unavailable(String),
    /// The message was stored and delivered, but no replica confirmed it in time
    /// (`--redis-wait-replicas`): a failover now could lose it. Reported as `unavailable`.
    #[error(
        "the message was not confirmed by a Redis replica in time and may be lost; it may \
         also have been delivered"
    )]
    Unconfirmed(String),
    /// The name is held by another user (unique names only).
    #[error("the name {0:?} is taken")]
    NameTaken(String),
}

/// What the engine hands back to a node for local fan-out.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A chat message for every local member of its channel.
    Message(Arc<ChatMessage>),
    /// A user joined a channel.
    UserJoined(Arc<PresenceChange>),
    /// A user left a channel.
    UserLeft(Arc<PresenceChange>),
    /// A direct message for every local connection of `to`.
    Direct {
        /// Recipient user id.
        to: Arc<str>,
        /// The message.
        message: Arc<DirectMessage>,
    },
    /// An operator broadcast for every local connection (or, when it names a channel, for its
    /// local members).
    Broadcast(Arc<BroadcastMessage>),
    /// A node's report (this node's own too), for the console's overview.
    Node(Arc<NodeInfo>),
    /// A moderation action on every local connection of `user`.
    Sanction {
        /// The user.
        user: Arc<str>,
        /// The action.
        sanction: Arc<Sanction>,
    },
    /// A user is typing: for every local member of the channel but the typist's own
    /// connections. Published through [`Broker::announce`], never kept in history.
    Typing(Arc<TypingUser>),
    /// `user`'s block list changed: the full list now (every node updates the cache of its
    /// local connections of `user`).
    Blocks {
        /// The blocking user.
        user: Arc<str>,
        /// The list and its version.
        blocks: Arc<BlockSnapshot>,
        /// Read again after missed changes (a pub/sub outage): replaces the cached list even
        /// when its version is not newer (the backend may have lost its data).
        reset: bool,
    },
}

/// Receives everything the engine delivers to this node.
pub trait DeliverySink: Send + Sync + 'static {
    /// Fans one delivery out to local connections. Must not block.
    fn deliver(&self, delivery: Delivery);
}

/// A message to publish; the engine assigns its id and time.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Target channel.
    pub channel: String,
    /// Sender's user id.
    pub user_id: String,
    /// Sender's display name.
    pub username: String,
    /// The text.
    pub message: String,
}

impl NewMessage {
    /// The message as stored and delivered, once the engine gave it an id (its time is the
    /// id's millisecond part).
    pub fn stored(self, id: MessageId) -> ChatMessage {
        ChatMessage {
            username: self.username,
            message: self.message,
            channel: self.channel,
            id,
            user_id: self.user_id,
            ts: id.ms,
        }
    }
}

/// Which kept messages to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest `limit` messages.
    Last {
        /// How many.
        limit: usize,
    },
    /// Every kept message after `after` (at most `limit`, the oldest first).
    Since {
        /// Exclusive lower bound.
        after: MessageId,
        /// Most messages to return.
        limit: usize,
    },
    /// The `limit` newest messages older than `before`.
    Before {
        /// Exclusive upper bound.
        before: MessageId,
        /// Most messages to return.
        limit: usize,
    },
}

/// Result of a history read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Older kept messages exist before the first one returned.
    pub more: bool,
    /// (Since only) messages after `after` were already dropped: the reader missed some for good.
    pub gap: bool,
}

/// A user's block list as the engine holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSnapshot {
    /// Grows with every change of the list (0: never changed), so that a node applies only
    /// lists newer than the one it has.
    pub version: u64,
    /// Every user blocked, sorted.
    pub users: Vec<String>,
}

/// Result of [`ModerationStore::block`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Blocked (or blocked already): the list now.
    Blocked(BlockSnapshot),
    /// The user blocks `max` users already and the target is not one of them: nothing changed.
    TooMany,
}

/// A presence change or a typing indicator: what [`Broker::announce`] carries to every node
/// (never kept).
#[derive(Debug, Clone)]
pub enum Announcement {
    /// A user joined a channel (present on no node before).
    UserJoined(Arc<PresenceChange>),
    /// A user left a channel (present on no node now).
    UserLeft(Arc<PresenceChange>),
    /// A user is typing in a channel.
    Typing(Arc<TypingUser>),
}

impl From<Announcement> for Delivery {
    fn from(announcement: Announcement) -> Self {
        match announcement {
            Announcement::UserJoined(change) => Delivery::UserJoined(change),
            Announcement::UserLeft(change) => Delivery::UserLeft(change),
            Announcement::Typing(typing) => Delivery::Typing(typing),
        }
    }
}

/// Traffic between nodes, and the channel history it is published with (as centrifuge's
/// Broker: a message is appended to history and delivered in one step). Owns channel
/// subscriptions, history, and which node serves which user (for direct messages).
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Starts receiving a channel's traffic on this node (the node's first local member joined).
    /// Must not return before messages published afterwards are guaranteed to be delivered.
    async fn subscribe(&self, channel: &str) -> Result<(), EngineError>;

    /// Stops receiving a channel's traffic (the node's last local member left).
    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError>;

    /// Assigns an id and time, appends to history and delivers to every subscribed node, in
    /// one atomic step. Returns the stored message once it is kept (acknowledge it then).
    async fn publish(&self, message: NewMessage) -> Result<Arc<ChatMessage>, EngineError>;

    /// Reads kept messages of a channel.
    async fn history(&self, channel: &str, query: HistoryQuery) -> Result<History, EngineError>;

    /// Delivers a presence change or a typing indicator to every member of the channel, on
    /// every node (nothing is stored).
    async fn announce(&self, announcement: Announcement) -> Result<(), EngineError>;

    /// Records that `user_id` has a connection on this node (for direct messages).
    async fn user_online(&self, user_id: &str) -> Result<(), EngineError>;

    /// Records that one of `user_id`'s connections on this node closed.
    async fn user_offline(&self, user_id: &str) -> Result<(), EngineError>;

    /// Delivers a direct message to every connection of `to`, on every node. Returns false
    /// when the user has no connection anywhere (nothing was delivered).
    async fn send_direct(&self, to: &str, message: DirectMessage) -> Result<bool, EngineError>;

    /// Delivers an operator broadcast to every connection on every node.
    async fn broadcast(&self, message: BroadcastMessage) -> Result<(), EngineError>;

    /// Tells every node (this one too) this node's report, its `node` set to this node's id.
    async fn announce_node(&self, info: NodeInfo) -> Result<(), EngineError>;

    /// Whether the backend is reachable and keeps what it is given (for `/healthz`).
    async fn ready(&self) -> bool;
}

/// Who is in which channel, on any node (as centrifuge's PresenceManager).
#[async_trait]
pub trait PresenceManager: Send + Sync + 'static {
    /// Records that `user_id` is in `channel` on this node. Returns true when the user was not
    /// present in the channel before (on any node): the caller then announces `user_joined`.
    async fn presence_add(&self, channel: &str, user_id: &str) -> Result<bool, EngineError>;

    /// Records that `user_id` left `channel` on this node. Returns true when the user is now
    /// present on no node: the caller then announces `user_left`.
    async fn presence_remove(&self, channel: &str, user_id: &str) -> Result<bool, EngineError>;

    /// Users present in a channel, each once, with their names.
    async fn presence(&self, channel: &str) -> Result<Vec<PresenceUser>, EngineError>;

    /// The nodes where `user_id` has a connection now (`local` on one node).
    async fn online_nodes(&self, user_id: &str) -> Result<Vec<String>, EngineError>;

    /// The channels `user_id` is present in, on any node, sorted (for the console: it may scan).
    async fn channels_of(&self, user_id: &str) -> Result<Vec<String>, EngineError>;
}

/// Names kept per user in its name history (the console's players page).
pub const NAMES_KEPT: usize = 5;

/// What is kept about users: their display names. (Guest accounts are the identity's
/// [`GuestStore`](crate::identity::guests::GuestStore).)
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Sets a user's display name (claimed atomically when `unique`). Returns once it is kept.
    async fn set_name(&self, user_id: &str, name: &str, unique: bool) -> Result<(), EngineError>;

    /// A user's display name, if set.
    async fn name(&self, user_id: &str) -> Result<Option<String>, EngineError>;

    /// A user's last [`NAMES_KEPT`] names, newest first, as `(name, set at ms)`.
    async fn name_history(&self, user_id: &str) -> Result<Vec<(String, u64)>, EngineError>;

    /// Up to `limit` users whose name holds `query` (any case), as `(user_id, name)`, or `None`
    /// when this store cannot search names.
    async fn find_by_name(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Option<Vec<(String, String)>>, EngineError>;
}

/// Mutes, bans and block lists: kept, and applied on every node.
#[async_trait]
pub trait ModerationStore: Send + Sync + 'static {
    /// Records a moderation action (mutes and bans are kept until they end or are lifted)
    /// and delivers it to every node, which applies it to the user's connections.
    async fn moderate(&self, user_id: &str, sanction: Sanction) -> Result<(), EngineError>;

    /// A user's mute and ban as recorded (expired ones may still be listed).
    async fn standing(&self, user_id: &str) -> Result<Standing, EngineError>;

    /// Adds `target` to `user`'s block list unless that already holds `max` others (checked and
    /// added in one atomic step), and delivers the new list to every node.
    async fn block(
        &self,
        user: &str,
        target: &str,
        max: usize,
    ) -> Result<BlockOutcome, EngineError>;

    /// Removes `target` from `user`'s block list, delivers the new list to every node and
    /// returns it.
    async fn unblock(&self, user: &str, target: &str) -> Result<BlockSnapshot, EngineError>;

    /// `user`'s block list.
    async fn blocked(&self, user: &str) -> Result<BlockSnapshot, EngineError>;
}

/// The engine of a node: each part, and so each kind of data, owned by one backend. On Redis
/// one backend owns them all; on one node the in-process engine owns traffic, history and
/// presence, and names and moderation have their own in-process stores; with the embedded
/// database (the default) every kept change also goes to its file.
#[derive(Clone)]
pub struct Engine {
    /// Traffic between nodes, and history.
    pub broker: Arc<dyn Broker>,
    /// Who is in which channel.
    pub presence: Arc<dyn PresenceManager>,
    /// Names.
    pub users: Arc<dyn UserStore>,
    /// Mutes, bans, block lists.
    pub moderation: Arc<dyn ModerationStore>,
    /// What operators did.
    pub audit: Arc<dyn AuditLog>,
}

impl Engine {
    /// An engine whose every part is one backend (Redis).
    pub fn of<T>(backend: Arc<T>) -> Self
    where
        T: Broker + PresenceManager + UserStore + ModerationStore + AuditLog,
    {
        Self {
            broker: backend.clone(),
            presence: backend.clone(),
            users: backend.clone(),
            moderation: backend.clone(),
            audit: backend,
        }
    }

    /// A single node's engine that keeps nothing across restarts (`--engine memory` with its
    /// default caps), delivering to `sink`: for embedding and fuzzing.
    pub fn in_memory(sink: Arc<dyn DeliverySink>, history_size: usize) -> Self {
        let users = Arc::new(MemoryUsers::new());
        let channels = Arc::new(MemoryEngine::new(sink.clone(), history_size, users.clone()));
        Self {
            broker: channels.clone(),
            presence: channels,
            users,
            moderation: Arc::new(MemoryModeration::new(sink)),
            audit: Arc::new(MemoryAudit::new()),
        }
    }

    /// Whether the backend is reachable and keeps what it is given (for `/healthz`).
    pub async fn ready(&self) -> bool {
        self.broker.ready().await
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
