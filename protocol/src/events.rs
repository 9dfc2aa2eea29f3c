//! Server → client events: `{"type": ..., "payload": {...}}` frames that are not plain replies.

use serde::{Deserialize, Serialize};

use crate::ids::MessageId;

/// A message delivered to a channel (`chat_message_received`).
///
/// The first three fields are the seed's; `id`, `user_id` and `ts` are ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Sender's display name at the time of sending.
    pub username: String,
    /// The text.
    pub message: String,
    /// Channel it was sent to.
    pub channel: String,
    /// Id, ordered within the channel.
    pub id: MessageId,
    /// Sender's user id.
    pub user_id: String,
    /// Server time of acceptance, ms since the Unix epoch.
    pub ts: u64,
}

/// A batch of kept channel messages, oldest first (`history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The channel.
    pub channel: String,
    /// Messages in id order.
    pub messages: Vec<ChatMessage>,
    /// Older messages than the first one here are still kept (ask with `before`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    /// Set on a `since` replay when messages after `since` were already dropped from history:
    /// the client missed some messages for good.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gap: bool,
}

/// One user present in a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUser {
    /// User id.
    pub user_id: String,
    /// Display name, if the user set one.
    pub username: Option<String>,
}

/// Answer to `who` (`presence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceList {
    /// The channel.
    pub channel: String,
    /// Users present, each once however many connections they have.
    pub users: Vec<PresenceUser>,
}

/// A user arrived in or left a channel (`user_joined` / `user_left`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// The channel.
    pub channel: String,
    /// User id.
    pub user_id: String,
    /// Display name, if the user set one.
    pub username: Option<String>,
}

/// A message sent to one user (`direct_message_received`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectMessage {
    /// Unique id (time-ordered UUID).
    pub id: String,
    /// Sender's user id.
    pub from: String,
    /// Sender's display name.
    pub username: String,
    /// The text.
    pub message: String,
    /// Server time of acceptance, ms since the Unix epoch.
    pub ts: u64,
}

/// An operator announcement to everyone connected, or to one channel's members (`broadcast`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastMessage {
    /// The text.
    pub message: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
    /// The channel it was sent to; absent when sent to everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// A member of a channel is typing there (`user_typing`). Sent to the channel's other members,
/// at most once per `--typing-interval` per sender and channel; never kept in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingUser {
    /// The channel.
    pub channel: String,
    /// The typing user's id.
    pub user_id: String,
    /// The typing user's display name.
    pub username: String,
}

/// The users this user blocks (`blocked_users`): the answer to `blocked`, and sent after every
/// `block` and `unblock`, always the full current list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedUsers {
    /// Blocked user ids, sorted.
    pub user_ids: Vec<String>,
}

/// Every typed server → client frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum Event {
    /// A channel message.
    ChatMessageReceived(ChatMessage),
    /// Kept messages (after a `join` with `history`/`since`, or a `history` request).
    History(HistoryPage),
    /// Answer to `who`.
    Presence(PresenceList),
    /// A user joined a channel this connection is in.
    UserJoined(PresenceChange),
    /// A user left a channel this connection is in.
    UserLeft(PresenceChange),
    /// A direct message to this user.
    DirectMessageReceived(DirectMessage),
    /// An operator broadcast.
    Broadcast(BroadcastMessage),
    /// Answer to `ping`.
    Pong,
    /// Another member of a channel this connection is in is typing.
    UserTyping(TypingUser),
    /// The user's block list (answer to `block`, `unblock` and `blocked`).
    BlockedUsers(BlockedUsers),
}
