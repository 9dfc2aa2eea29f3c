//! Chat for Bevy games: add [`ChatPlugin`], then talk through the [`Chat`] system parameter and
//! read what arrives as Bevy messages. It talks to the bevy chat server (`chat-server` in the same
//! repository) or any server of the same wire protocol.
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_chat_plugin::prelude::*;
//!
//! App::new()
//!     .add_plugins((
//!         MinimalPlugins,
//!         ChatPlugin::new("http://127.0.0.1:8080").with_app_name("my_game"),
//!     ))
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
//!   backoff and resume all run on a background thread; the main thread only drains a channel in
//!   `PreUpdate` ([`ChatSet::Receive`]) and hands over commands in `PostUpdate`
//!   ([`ChatSet::Send`]). Nothing on the main thread waits on the network.
//! - The connection state is a resource, [`ChatConnectionState`], with run conditions
//!   [`chat_connected`] and friends.
//! - [`ChatLog`] keeps the last lines of every channel, of direct messages and of the chat's own
//!   lines ([`ChatLogKey`]) for UIs.
//! - Works headless with `MinimalPlugins`; at 100 messages a second it adds well under 0.1 ms
//!   per frame (`cargo bench -p bevy_chat_plugin --bench frame_time`).
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | yes | `https://` / `wss://` servers (rustls with webpki roots; no system libraries) |
//! | `ui` | no | `ChatUiPlugin`: an egui chat panel (bevy_egui), with the windowing and rendering features of Bevy it needs |
//! | `ui-cjk-font` | no | embeds a Chinese and Japanese font (Droid Sans Fallback, ~3.9 MiB) in the panel; `ui` alone embeds DejaVu Sans (~742 KiB) |
//! | `bubbles` | no | speech bubbles over players in the game world (`ChatSpeaker`), with Bevy UI |
//!
//! Without `ui` and `bubbles` the crate builds Bevy with no rendering at all (a headless bot or a
//! dedicated server builds fast).
//!
//! # Bevy versions
//!
//! | bevy_chat_plugin | bevy | bevy_egui (feature `ui`) | Rust |
//! |---|---|---|---|
//! | 0.1 | 0.19 | 0.42 | 1.95 |

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod auth;
mod blocks;
#[cfg(feature = "bubbles")]
pub mod bubbles;
mod config;
mod log;
mod messages;
mod net;
mod state;
mod systems;
mod typing;
#[cfg(feature = "ui")]
pub mod ui;

use bevy::prelude::*;

pub use api::Chat;
pub(crate) use auth::ChatAuth;
/// The bevy_egui the panel is built with (cargo feature `ui`), for games that add `EguiPlugin`
/// themselves.
#[cfg(feature = "ui")]
pub use bevy_egui;
pub use blocks::ChatBlockList;
#[cfg(feature = "bubbles")]
pub use bubbles::{ChatBubbleStyle, ChatBubblesPlugin, ChatSpeaker};
pub use config::{ChatLogin, ChatPlugin, ReconnectPolicy};
pub use log::{ChatLine, ChatLineKind, ChatLog, ChatLogKey};
pub use messages::*;
pub use protocol::{ErrorCode, MessageId, PresenceUser};
pub use state::{ChatConnectionState, chat_connected, chat_disconnected, chat_just_connected};
pub use typing::{ChatTyping, TYPING_SHOWN_FOR};
#[cfg(feature = "ui")]
pub use ui::{
    ChatUiFocus, ChatUiPlugin, ChatUiState, ChatUiStyle, ChatUiSystems, chat_has_keyboard,
    chat_ui_typing,
};

/// The README's Rust snippets (the plugin, the chat panel, speech bubbles), compiled by
/// `cargo test --doc --features ui,bubbles` (and by `cargo test --workspace`, where the examples
/// turn both on) so that they cannot drift from the API.
#[cfg(all(doctest, feature = "ui", feature = "bubbles"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// Everything a game usually needs.
pub mod prelude {
    pub use crate::{
        BroadcastReceived, Chat, ChatBlockList, ChatBlockListChanged, ChatConnected,
        ChatConnectionState, ChatDisconnected, ChatError, ChatErrorCode, ChatJoined, ChatLeft,
        ChatLineKind, ChatLog, ChatLogKey, ChatLogin, ChatMessageReceived, ChatPlugin, ChatRequest,
        ChatSet, ChatTyping, ChatUserTyping, DirectMessageReceived, NameSet, PresenceChange,
        PresenceChanged, chat_connected, chat_disconnected, chat_just_connected,
    };
    #[cfg(feature = "bubbles")]
    pub use crate::{ChatBubbleStyle, ChatBubblesPlugin, ChatSpeaker};
    #[cfg(feature = "ui")]
    pub use crate::{ChatUiFocus, ChatUiPlugin, ChatUiState, chat_has_keyboard, chat_ui_typing};
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
        // Everything is registered whatever happens next, so that systems taking `Chat` or
        // reading chat messages work (and see the failure) even when chat cannot start.
        app.init_resource::<ChatConnectionState>()
            .add_message::<ChatMessageReceived>()
            .add_message::<DirectMessageReceived>()
            .add_message::<BroadcastReceived>()
            .add_message::<ChatJoined>()
            .add_message::<ChatLeft>()
            .add_message::<NameSet>()
            .add_message::<PresenceChanged>()
            .add_message::<ChatError>()
            .add_message::<ChatConnected>()
            .add_message::<ChatDisconnected>()
            .insert_resource(ChatLog::new(self.log_lines))
            .init_resource::<ChatAuth>()
            .add_message::<ChatUserTyping>()
            .add_message::<ChatBlockListChanged>()
            .init_resource::<ChatBlockList>()
            .init_resource::<api::ChatOutbox>()
            .init_resource::<ChatTyping>();
        self.warn_if_identities_shared();
        let started = self.validate().and_then(|()| {
            net::spawn(self.clone())
                .map_err(|error| format!("cannot start the chat network thread: {error}"))
        });
        match started {
            Ok(net) => {
                app.insert_resource(systems::ChatNet(net))
                    .add_systems(PreUpdate, systems::receive.in_set(ChatSet::Receive))
                    .add_systems(PostUpdate, systems::send.in_set(ChatSet::Send));
            }
            Err(reason) => {
                bevy::log::error!("chat is off: {reason}");
                app.insert_resource(ChatConnectionState::Failed)
                    .insert_resource(systems::StartFailure {
                        reason,
                        reported: false,
                    })
                    .add_systems(PreUpdate, systems::report_failure.in_set(ChatSet::Receive))
                    .add_systems(PostUpdate, systems::refuse_commands.in_set(ChatSet::Send));
            }
        }
    }
}
