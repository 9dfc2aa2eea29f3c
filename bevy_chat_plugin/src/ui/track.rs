//! What the panel remembers from the chat's messages: tabs, unread counts, who is present, the
//! player's name, and why the chat is not connected.

use std::collections::HashMap;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use protocol::PresenceUser;

use super::ChatUiState;
use crate::Chat;
use crate::log::ChatLogKey;
use crate::messages::{
    ChatConnected, ChatDisconnected, ChatError, ChatErrorCode, ChatJoined, ChatLeft,
    ChatMessageReceived, ChatRequest, NameSet, PresenceChange, PresenceChanged,
};

/// The panel's picture of the chat, kept from the chat's messages.
#[derive(Debug, Default)]
pub(crate) struct StatusInfo {
    /// Unread live messages per channel.
    pub unread: HashMap<String, u32>,
    /// Who is in each joined channel, as last heard.
    pub presence: HashMap<String, Vec<PresenceUser>>,
    /// The player's name, as the server last confirmed it.
    pub name: Option<String>,
    /// Why the connection is down or the chat is off (the last disconnect reason, login or
    /// connection error, or start failure), until the next connect.
    pub problem: Option<String>,
}

/// Every chat message the panel follows.
#[derive(SystemParam)]
pub(super) struct ChatReaders<'w, 's> {
    joined: MessageReader<'w, 's, ChatJoined>,
    left: MessageReader<'w, 's, ChatLeft>,
    received: MessageReader<'w, 's, ChatMessageReceived>,
    presence: MessageReader<'w, 's, PresenceChanged>,
    names: MessageReader<'w, 's, NameSet>,
    errors: MessageReader<'w, 's, ChatError>,
    connected: MessageReader<'w, 's, ChatConnected>,
    disconnected: MessageReader<'w, 's, ChatDisconnected>,
}

/// `Update`: keeps tabs, unread counts, presence lists, the name and the connection problem in
/// step with the chat.
pub(super) fn track_chat(mut state: ResMut<ChatUiState>, mut chat: Chat, mut read: ChatReaders) {
    let state = &mut *state;
    for joined in read.joined.read() {
        if !state.tabs.contains(&joined.channel) {
            state.tabs.push(joined.channel.clone());
        }
        if state.active.is_none() || !joined.rejoined {
            state.active = Some(ChatLogKey::channel(&joined.channel));
        }
        chat.who(&joined.channel);
    }
    for left in read.left.read() {
        state.tabs.retain(|t| *t != left.channel);
        state.status.presence.remove(&left.channel);
        state.status.unread.remove(&left.channel);
        if state.active.as_ref().and_then(ChatLogKey::as_channel) == Some(left.channel.as_str()) {
            state.active = state.tabs.first().map(ChatLogKey::channel);
        }
    }
    for message in read.received.read() {
        let active = state.active.as_ref().and_then(ChatLogKey::as_channel)
            == Some(message.channel.as_str());
        if !active && !message.from_history {
            *state
                .status
                .unread
                .entry(message.channel.clone())
                .or_default() += 1;
        }
    }
    for update in read.presence.read() {
        let users = state
            .status
            .presence
            .entry(update.channel.clone())
            .or_default();
        match &update.change {
            PresenceChange::Snapshot(all) => *users = all.clone(),
            PresenceChange::Joined(user) => {
                users.retain(|u| u.user_id != user.user_id);
                users.push(user.clone());
            }
            PresenceChange::Left(user) => users.retain(|u| u.user_id != user.user_id),
        }
    }
    for name in read.names.read() {
        state.status.name = Some(name.username.clone());
    }
    for error in read.errors.read() {
        if error.code == ChatErrorCode::NotStarted && error.request != ChatRequest::Connect {
            // A command refused because chat is off: the start failure already says why.
            continue;
        }
        let about_the_connection =
            matches!(
                error.code,
                ChatErrorCode::NotStarted
                    | ChatErrorCode::Login
                    | ChatErrorCode::Auth
                    | ChatErrorCode::Connection
            ) || matches!(error.request, ChatRequest::Login | ChatRequest::Connect);
        if about_the_connection {
            state.status.problem = Some(error.message.clone());
        }
    }
    for disconnected in read.disconnected.read() {
        state.status.problem = Some(disconnected.reason.clone());
    }
    if read.connected.read().count() > 0 {
        state.status.problem = None;
    }
}
