//! The connection lifecycle as a Bevy [`States`], and run conditions on it.

use bevy::prelude::*;

/// Where the chat connection is. Changes are applied in the `StateTransition` schedule right
/// after [`ChatSet::Receive`](crate::ChatSet::Receive), so `OnEnter(ChatConnectionState::Connected)`
/// and friends work as usual.
#[derive(States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
}

/// Run condition: the chat is connected.
pub fn chat_connected(state: Option<Res<State<ChatConnectionState>>>) -> bool {
    state.is_some_and(|s| *s.get() == ChatConnectionState::Connected)
}

/// Run condition: the chat is not connected (any other state).
pub fn chat_disconnected(state: Option<Res<State<ChatConnectionState>>>) -> bool {
    !chat_connected(state)
}

/// Run condition: the chat just connected (or reconnected) this frame.
pub fn chat_just_connected(state: Option<Res<State<ChatConnectionState>>>) -> bool {
    state.is_some_and(|s| s.is_changed() && *s.get() == ChatConnectionState::Connected)
}
