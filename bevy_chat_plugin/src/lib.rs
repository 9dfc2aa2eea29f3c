//! Chat for Bevy games: add [`ChatPlugin`], then talk through the [`Chat`] system parameter and
//! read what arrives as Bevy messages.
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_chat_plugin::prelude::*;
//!
//! App::new()
//!     .add_plugins((MinimalPlugins, ChatPlugin::new("http://127.0.0.1:8080")))
//!     .add_systems(Startup, |mut chat: Chat| {
//!         chat.set_name("Ann");
//!         chat.join("lobby");
//!     })
//!     .add_systems(Update, |mut received: MessageReader<ChatMessageReceived>| {
//!         for m in received.read() {
//!             info!("[{}] {}: {}", m.channel, m.username, m.text);
//!         }
//!     })
//!     .run();
//! ```
//!
//! - Login (guest, with saved credentials, or your own token), the WebSocket, reconnects with
//!   backoff and resume all run on a background thread; the main
//!   thread only drains a channel in `PreUpdate` ([`ChatSet::Receive`]) and hands over commands in
//!   `PostUpdate` ([`ChatSet::Send`]).
//! - The connection state is a resource, [`ChatConnectionState`], with run conditions
//!   [`chat_connected`] and friends.
//! - [`ChatLog`] keeps the last lines of every channel for UIs.
//! - Works headless with `MinimalPlugins`; at 100 messages a second it adds well under 0.1 ms
//!   per frame (`cargo bench -p bevy_chat_plugin --bench frame_time`).

mod api;
mod auth;
#[cfg(feature = "bubbles")]
pub mod bubbles;
mod config;
mod log;
mod messages;
mod net;
mod state;
mod systems;
#[cfg(feature = "ui")]
pub mod ui;

use bevy::prelude::*;

pub use api::{Chat, ChatOutbox};
pub use auth::{ChatAuth, GuestCredentials, load_credentials, save_credentials};
#[cfg(feature = "bubbles")]
pub use bubbles::{ChatBubbleStyle, ChatBubblesPlugin, ChatSpeaker};
pub use config::{ChatLogin, ChatPlugin, ReconnectPolicy};
pub use log::{ChatLine, ChatLineKind, ChatLog, DIRECT_LOG};
pub use messages::*;
pub use protocol::{ErrorCode, MessageId, PresenceUser};
pub use state::{ChatConnectionState, chat_connected, chat_disconnected, chat_just_connected};
pub use systems::SYSTEM_LOG;
#[cfg(feature = "ui")]
pub use ui::{ChatUiFocus, ChatUiPlugin, ChatUiState, ChatUiStyle, chat_ui_typing};

/// Everything a game usually needs.
pub mod prelude {
    pub use crate::{
        Chat, ChatConnectionState, ChatError, ChatErrorCode, ChatLog, ChatLogin,
        ChatMessageReceived, ChatPlugin, ChatSet, Connected, DirectMessageReceived, Disconnected,
        Joined, Left, PresenceChanged, chat_connected,
    };
}

/// System sets to order your systems against.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChatSet {
    /// `PreUpdate`: network events become messages, [`ChatLog`] lines and state changes.
    Receive,
    /// `PostUpdate`: commands queued with [`Chat`] go to the network thread.
    Send,
}

impl Plugin for ChatPlugin {
    fn build(&self, app: &mut App) {
        let net = match net::NetHandle::spawn(self.clone()) {
            Ok(net) => net,
            Err(error) => {
                bevy::log::error!(%error, "chat: cannot start the network thread; chat is off");
                return;
            }
        };
        app.init_resource::<ChatConnectionState>()
            .add_message::<ChatMessageReceived>()
            .add_message::<DirectMessageReceived>()
            .add_message::<BroadcastReceived>()
            .add_message::<Joined>()
            .add_message::<Left>()
            .add_message::<NameSet>()
            .add_message::<PresenceChanged>()
            .add_message::<ChatError>()
            .add_message::<Connected>()
            .add_message::<Disconnected>()
            .insert_resource(ChatLog::new(self.log_lines))
            .insert_resource(ChatAuth {
                user_id: None,
                credentials_file: self.credentials_path(),
            })
            .init_resource::<ChatOutbox>()
            .insert_resource(systems::ChatNet(net))
            .add_systems(PreUpdate, systems::receive.in_set(ChatSet::Receive))
            .add_systems(PostUpdate, systems::send.in_set(ChatSet::Send));
    }
}
