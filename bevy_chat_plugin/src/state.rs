//! The connection lifecycle as a resource, and run conditions on it.

use bevy::prelude::*;

/// Where the chat connection is: a resource, updated in [`ChatSet::Receive`](crate::ChatSet::Receive)
/// only when it really changes (at most once per frame, to the frame's last state), so
/// `resource_changed::<ChatConnectionState>` and [`chat_just_connected`] see each transition
/// once. The [`ChatConnected`](crate::ChatConnected) and
/// [`ChatDisconnected`](crate::ChatDisconnected) messages carry the details of each transition.
///
/// The state machine:
///
/// ```text
/// Disconnected ─connect─▶ LoggingIn ─▶ Connecting ─▶ Connected
///                             │             │          │   ▲
///                             └──── fails ──┴──────────┤   │ an attempt succeeds
///                                               drops  ▼   │
///                                         Reconnecting (attempts with backoff inside)
///
/// any state ─ Chat::disconnect, or a token of the game's own refused ─▶ Disconnected
/// ```
///
/// - `LoggingIn` and `Connecting` are the steps of the first attempt after the app starts (or
///   after [`Chat::connect`](crate::Chat::connect)); `LoggingIn` is skipped when a usable token
///   is at hand.
/// - `Reconnecting` starts when an attempt fails or the connection drops, and lasts until an
///   attempt succeeds (`Connected`) or the plugin stops trying (`Disconnected`): the attempts
///   made meanwhile, with backoff, log in and connect again without changing the state. So one
///   outage is one change to `Reconnecting` and one back to `Connected`.
/// - `Failed` is final: the plugin never started.
///
/// It is deliberately not a Bevy `States`: with the multi-threaded executor, the state machinery
/// (the `StateTransition` schedule and its exclusive systems) cost ~120 µs per frame on its own,
/// more than all of the plugin's chat work (`cargo bench -p bevy_chat_plugin --bench frame_time`).
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChatConnectionState {
    /// Not connected and not trying (before connecting, or after [`Chat::disconnect`](crate::Chat::disconnect)).
    #[default]
    Disconnected,
    /// First attempt: getting an access token over HTTP.
    LoggingIn,
    /// First attempt: opening the WebSocket.
    Connecting,
    /// Connected: requests go out at once.
    Connected,
    /// An attempt failed or the connection dropped: trying again with backoff until connected
    /// (the attempts do not change the state).
    Reconnecting,
    /// The chat cannot run in this app: the server URL is not `http://` or `https://`, or the
    /// network thread could not start. A [`ChatError`](crate::ChatError) with
    /// [`ChatErrorCode::NotStarted`](crate::ChatErrorCode::NotStarted) says why; requests are
    /// answered with the same error.
    Failed,
}

/// Run condition: the chat is connected.
pub fn chat_connected(state: Option<Res<ChatConnectionState>>) -> bool {
    state.is_some_and(|s| *s == ChatConnectionState::Connected)
}

/// Run condition: the chat is not connected (any other state).
pub fn chat_disconnected(state: Option<Res<ChatConnectionState>>) -> bool {
    !chat_connected(state)
}

/// Run condition: the chat just connected (or reconnected) this frame.
pub fn chat_just_connected(state: Option<Res<ChatConnectionState>>) -> bool {
    state.is_some_and(|s| s.is_changed() && *s == ChatConnectionState::Connected)
}
