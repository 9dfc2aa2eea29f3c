//! What the chat tells the game: buffered Bevy [`Message`]s, written in `PreUpdate`
//! ([`ChatSet::Receive`](crate::ChatSet::Receive)) and readable with `MessageReader` from then on.

use bevy::prelude::*;
use protocol::{ErrorCode, MessageId, PresenceUser};

/// A message in a channel this client joined (live, or replayed from history).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatMessageReceived {
    /// The channel.
    pub channel: String,
    /// Message id, ordered within the channel.
    pub id: MessageId,
    /// Sender's user id.
    pub user_id: String,
    /// Sender's display name.
    pub username: String,
    /// The text.
    pub text: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
    /// Replayed from history (on join or after a reconnect) rather than live.
    pub from_history: bool,
}

/// A direct message to this user.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct DirectMessageReceived {
    /// Unique id.
    pub id: String,
    /// Sender's user id.
    pub from: String,
    /// Sender's display name.
    pub username: String,
    /// The text.
    pub text: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
}

/// An operator announcement to everyone, or to the members of one channel (`channel`).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct BroadcastReceived {
    /// The text.
    pub text: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
    /// The channel it was sent to (its members only); `None` when sent to everyone.
    pub channel: Option<String>,
}

/// Another member of a channel is typing (the server passes about one every two seconds per
/// user and channel). [`ChatTyping`](crate::ChatTyping) keeps the current list for UIs.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatUserTyping {
    /// The channel.
    pub channel: String,
    /// The typing user's id.
    pub user_id: String,
    /// The typing user's display name.
    pub username: String,
}

/// The player's block list changed (after [`Chat::block`](crate::Chat::block) or
/// [`Chat::unblock`](crate::Chat::unblock), from any of the player's connections) or was read
/// on connect. [`ChatBlockList`](crate::ChatBlockList) holds the latest.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatBlockListChanged {
    /// Every blocked user id, sorted.
    pub user_ids: Vec<String>,
}

/// This client is now in a channel.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatJoined {
    /// The channel.
    pub channel: String,
    /// Joined again automatically after a reconnect (history since the last message seen
    /// follows as [`ChatMessageReceived`] with `from_history`).
    pub rejoined: bool,
}

/// This client left a channel.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatLeft {
    /// The channel.
    pub channel: String,
}

/// The server accepted a new display name.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct NameSet {
    /// The name.
    pub username: String,
}

/// Who is in a channel changed, or a `who` answer arrived.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct PresenceChanged {
    /// The channel.
    pub channel: String,
    /// What changed.
    pub change: PresenceChange,
}

/// A presence update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceChange {
    /// A user arrived.
    Joined(PresenceUser),
    /// A user left.
    Left(PresenceUser),
    /// The full list (answer to [`Chat::who`](crate::Chat::who)).
    Snapshot(Vec<PresenceUser>),
}

/// Something the game asked for failed, or the connection has a problem.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatError {
    /// What was asked.
    pub request: ChatRequest,
    /// The channel or user it concerned, if any.
    pub target: Option<String>,
    /// The server's error code, or a client-side one (see [`ChatErrorCode`]).
    pub code: ChatErrorCode,
    /// Text for people.
    pub message: String,
}

/// What a [`ChatError`] is about: a request the game made through [`Chat`](crate::Chat), or
/// the plugin's own login and connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatRequest {
    /// Logging in over HTTP (guest login, refresh).
    Login,
    /// Opening the WebSocket.
    Connect,
    /// [`Chat::disconnect`](crate::Chat::disconnect).
    Disconnect,
    /// [`Chat::set_token`](crate::Chat::set_token).
    SetToken,
    /// [`Chat::set_name`](crate::Chat::set_name).
    SetName,
    /// [`Chat::join`](crate::Chat::join).
    Join,
    /// [`Chat::leave`](crate::Chat::leave).
    Leave,
    /// [`Chat::send`](crate::Chat::send).
    Message,
    /// [`Chat::direct`](crate::Chat::direct).
    Direct,
    /// [`Chat::who`](crate::Chat::who).
    Who,
    /// [`Chat::history`](crate::Chat::history).
    History,
    /// [`Chat::typing`](crate::Chat::typing).
    Typing,
    /// [`Chat::block`](crate::Chat::block).
    Block,
    /// [`Chat::unblock`](crate::Chat::unblock).
    Unblock,
    /// Reading the block list (on connect, or [`Chat::refresh_block_list`](crate::Chat::refresh_block_list)).
    Blocked,
    /// An error the server sent that answers none of this client's pending requests.
    Unknown,
}

impl ChatRequest {
    /// The request's name on the wire (`set-name`, `join`, ...) or, for the plugin's own
    /// steps, `login`, `connect`, `disconnect`, `set-token`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Connect => "connect",
            Self::Disconnect => "disconnect",
            Self::SetToken => "set-token",
            Self::SetName => "set-name",
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Message => "message",
            Self::Direct => "direct",
            Self::Who => "who",
            Self::History => "history",
            Self::Typing => "typing",
            Self::Block => "block",
            Self::Unblock => "unblock",
            Self::Blocked => "blocked",
            Self::Unknown => "unknown",
        }
    }

    /// Whether errors of this request concern one channel (its `target`).
    pub fn is_channel_request(self) -> bool {
        matches!(
            self,
            Self::Join | Self::Leave | Self::Message | Self::Who | Self::History | Self::Typing
        )
    }
}

impl std::fmt::Display for ChatRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error codes: the server's, plus the client's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatErrorCode {
    /// An error reply from the server.
    Server(ErrorCode),
    /// Not connected: the request was dropped (channels and the name are still applied on
    /// the next connect).
    NotConnected,
    /// The game queued more commands than the network thread took: the command was dropped.
    QueueFull,
    /// Logging in failed (HTTP or credentials).
    Login,
    /// The server refused the token.
    Auth,
    /// The connection failed or dropped.
    Connection,
    /// The plugin could not start (a bad server URL, or no network thread): nothing will be
    /// sent. See [`ChatConnectionState::Failed`](crate::ChatConnectionState::Failed).
    NotStarted,
}

/// The WebSocket is open and the session (name, channels) restored.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatConnected {
    /// This client's user id.
    pub user_id: String,
    /// A reconnect after a drop (rather than the first connect).
    pub reconnect: bool,
}

/// The WebSocket closed. The plugin reconnects on its own unless the game disconnected.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatDisconnected {
    /// Why, for people (close reason or error).
    pub reason: String,
    /// The plugin will try again.
    pub will_reconnect: bool,
}
