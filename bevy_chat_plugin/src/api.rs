//! [`Chat`]: the system parameter games use to talk.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use protocol::MessageId;

use crate::auth::ChatAuth;
use crate::net::Command;
use crate::state::ChatConnectionState;

/// Commands queued this frame; sent to the network thread in `PostUpdate`
/// ([`ChatSet::Send`](crate::ChatSet::Send)).
#[derive(Resource, Debug, Default)]
pub(crate) struct ChatOutbox {
    pub(crate) commands: Vec<Command>,
}

/// Chat from any system: `fn my_system(mut chat: Chat) { chat.send("lobby", "hi"); }`.
///
/// Every call only queues a command (no IO, no waiting). Results arrive as messages:
/// [`ChatJoined`](crate::ChatJoined), [`ChatLeft`](crate::ChatLeft), [`NameSet`](crate::NameSet),
/// [`ChatError`](crate::ChatError), and the traffic itself as
/// [`ChatMessageReceived`](crate::ChatMessageReceived) and friends.
///
/// ```
/// use bevy::prelude::*;
/// use bevy_chat_plugin::prelude::*;
///
/// // Says hello in the lobby, once.
/// fn greet(mut chat: Chat, mut done: Local<bool>) {
///     if !std::mem::replace(&mut *done, true) {
///         chat.join("lobby");
///         chat.send("lobby", "hello");
///     }
/// }
///
/// // Every request is answered: here, while not connected, with an error.
/// fn show_errors(mut errors: MessageReader<ChatError>) {
///     for error in errors.read() {
///         println!("{} failed: {}", error.request, error.message);
///     }
/// }
///
/// let mut plugin = ChatPlugin::new("http://127.0.0.1:8080");
/// plugin.auto_connect = false; // this example runs without a server
/// let mut app = App::new();
/// app.add_plugins((MinimalPlugins, plugin))
///     .add_systems(Update, (greet, show_errors));
/// app.update();
/// let state = *app.world().resource::<ChatConnectionState>();
/// assert_ne!(state, ChatConnectionState::Connected);
/// ```
#[derive(SystemParam)]
pub struct Chat<'w> {
    outbox: ResMut<'w, ChatOutbox>,
    auth: Res<'w, ChatAuth>,
    state: Option<Res<'w, ChatConnectionState>>,
}

impl Chat<'_> {
    fn push(&mut self, command: Command) {
        self.outbox.commands.push(command);
    }

    /// Sets the player's display name (kept by the server across reconnects, and re-applied by
    /// the plugin after one).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.push(Command::SetName(name.into()));
    }

    /// Joins a channel; it stays joined across reconnects until [`Chat::leave`].
    pub fn join(&mut self, channel: impl Into<String>) {
        self.push(Command::Join(channel.into()));
    }

    /// Leaves a channel.
    pub fn leave(&mut self, channel: impl Into<String>) {
        self.push(Command::Leave(channel.into()));
    }

    /// Sends a message to a joined channel.
    pub fn send(&mut self, channel: impl Into<String>, text: impl Into<String>) {
        self.push(Command::Send {
            channel: channel.into(),
            text: text.into(),
        });
    }

    /// Sends a direct message to every connection of a user.
    pub fn direct(&mut self, user_id: impl Into<String>, text: impl Into<String>) {
        self.push(Command::Direct {
            to: user_id.into(),
            text: text.into(),
        });
    }

    /// Says that the player is typing in a joined channel: call it while they type (every
    /// frame is fine). The other members get a [`ChatUserTyping`](crate::ChatUserTyping)
    /// about every two and a half seconds while it goes on; sending a message there ends it.
    /// Nothing is sent while not connected or for a channel not joined.
    pub fn typing(&mut self, channel: impl Into<String>) {
        self.push(Command::Typing(channel.into()));
    }

    /// Blocks a user: the server stops delivering their channel messages, direct messages and
    /// typing to this player (on every connection, kept across reconnects) until
    /// [`Chat::unblock`]. They are not told. The new list arrives as
    /// [`ChatBlockListChanged`](crate::ChatBlockListChanged) and in
    /// [`ChatBlockList`](crate::ChatBlockList).
    pub fn block(&mut self, user_id: impl Into<String>) {
        self.push(Command::Block(user_id.into()));
    }

    /// Unblocks a user blocked with [`Chat::block`].
    pub fn unblock(&mut self, user_id: impl Into<String>) {
        self.push(Command::Unblock(user_id.into()));
    }

    /// Reads the block list from the server again (it is read on every connect already).
    pub fn refresh_block_list(&mut self) {
        self.push(Command::Blocked);
    }

    /// Asks who is in a joined channel; the answer arrives as
    /// [`PresenceChanged`](crate::PresenceChanged) with a `Snapshot`.
    pub fn who(&mut self, channel: impl Into<String>) {
        self.push(Command::Who(channel.into()));
    }

    /// Asks for up to `limit` older messages of a joined channel (before `before`, or the
    /// newest when `None`); they arrive as [`ChatMessageReceived`](crate::ChatMessageReceived)
    /// with `from_history` set, skipping any already received.
    pub fn history(&mut self, channel: impl Into<String>, before: Option<MessageId>, limit: u32) {
        self.push(Command::History {
            channel: channel.into(),
            before,
            limit,
        });
    }

    /// Connects (when created with `auto_connect: false`, or after [`Chat::disconnect`]).
    pub fn connect(&mut self) {
        self.push(Command::Connect);
    }

    /// Closes the connection and stops reconnecting.
    pub fn disconnect(&mut self) {
        self.push(Command::Disconnect);
    }

    /// Hands the plugin a new access token (external issuer) and connects with it.
    pub fn set_token(&mut self, token: impl Into<String>) {
        self.push(Command::SetToken(token.into()));
    }

    /// Whether the chat is connected now.
    pub fn is_connected(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| **s == ChatConnectionState::Connected)
    }

    /// The player's user id, once logged in.
    pub fn user_id(&self) -> Option<&str> {
        self.auth.user_id.as_deref()
    }
}
