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

/// An operator announcement to everyone.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct BroadcastReceived {
    /// The text.
    pub text: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
}

/// This client is now in a channel.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The channel.
    pub channel: String,
    /// Joined again automatically after a reconnect (history since the last message seen
    /// follows as [`ChatMessageReceived`] with `from_history`).
    pub rejoined: bool,
}

/// This client left a channel.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct Left {
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
    /// What was asked (`join`, `message`, `login`, `connect`, ...).
    pub request: &'static str,
    /// The channel or user it concerned, if any.
    pub target: Option<String>,
    /// The server's error code, or a client-side one (see [`ChatErrorCode`]).
    pub code: ChatErrorCode,
    /// Text for people.
    pub message: String,
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
}

/// The WebSocket is open and the session (name, channels) restored.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// This client's user id.
    pub user_id: String,
    /// A reconnect after a drop (rather than the first connect).
    pub reconnect: bool,
}

/// The WebSocket closed. The plugin reconnects on its own unless the game disconnected.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    /// Why, for people (close reason or error).
    pub reason: String,
    /// The plugin will try again.
    pub will_reconnect: bool,
}
