//! The connection lifecycle as a resource, and run conditions on it.

use bevy::prelude::*;

/// Where the chat connection is: a resource, updated in [`ChatSet::Receive`](crate::ChatSet::Receive)
/// (only when it really changes, so `resource_changed::<ChatConnectionState>` and
/// [`chat_just_connected`] see each transition once). The [`ChatConnected`](crate::ChatConnected) and
/// [`ChatDisconnected`](crate::ChatDisconnected) messages carry the details of each transition.
///
/// It is deliberately not a Bevy `States`: with the multi-threaded executor, the state machinery
/// (the `StateTransition` schedule and its exclusive systems) cost ~120 µs per frame on its own,
/// more than all of the plugin's chat work (`cargo bench -p bevy_chat_plugin --bench frame_time`).
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChatConnectionState {
    /// Not connected and not trying (before connecting, or after [`Chat::disconnect`](crate::Chat::disconnect)).
    #[default]
    Disconnected,
    /// Getting an access token over HTTP.
    LoggingIn,
    /// Opening the WebSocket.
    Connecting,
    /// Connected: requests go out at once.
    Connected,
    /// The connection dropped; waiting before the next attempt.
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
