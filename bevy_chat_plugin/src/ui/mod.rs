//! [`ChatUiPlugin`]: an egui chat panel for a game overlay (cargo feature `ui`).
//!
//! Shows the connection status, joined channels as tabs with unread counts, the messages of
//! the active tab with names, times and system lines (joins, leaves, errors), who is present,
//! and an input line (Enter sends). Slash commands: `/join C`, `/leave`, `/name N`,
//! `/w USER_ID text`, `/who`. While the player types, keystrokes do not reach the game: egui
//! absorbs them, and [`ChatUiFocus`] / [`chat_ui_typing`] say so for systems that read input
//! some other way.

mod panel;

use std::collections::HashMap;
use std::path::PathBuf;

use bevy::prelude::*;
use bevy_egui::{EguiGlobalSettings, EguiPlugin, EguiPrimaryContextPass, egui};

use crate::log::ChatLogKey;
use crate::messages::{ChatJoined, ChatLeft, ChatMessageReceived, PresenceChange, PresenceChanged};
use crate::{Chat, ChatSet};
use protocol::PresenceUser;

/// Look of the panel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatUiStyle {
    /// Panel width, in logical pixels.
    pub width: f32,
    /// Panel height, in logical pixels.
    pub height: f32,
    /// Background opacity, 0.0 (invisible) to 1.0.
    pub opacity: f32,
    /// Screen corner the panel sits in.
    pub anchor: egui::Align2,
    /// Distance from that corner.
    pub offset: egui::Vec2,
    /// Base text size.
    pub text_size: f32,
}

impl Default for ChatUiStyle {
    fn default() -> Self {
        Self {
            width: 460.0,
            height: 330.0,
            opacity: 0.82,
            anchor: egui::Align2::LEFT_BOTTOM,
            offset: egui::vec2(12.0, -12.0),
            text_size: 14.0,
        }
    }
}

/// Adds the chat panel. Needs [`ChatPlugin`](crate::ChatPlugin) and a window; adds
/// `EguiPlugin` when missing.
#[derive(Debug, Clone)]
pub struct ChatUiPlugin {
    /// Shows and hides the panel.
    pub toggle_key: KeyCode,
    /// Puts the cursor in the input line (when the panel is shown).
    pub focus_key: KeyCode,
    /// Font files added after egui's own fonts, in fallback order (e.g. a CJK font), so that
    /// names and messages in other scripts render.
    pub font_files: Vec<PathBuf>,
    /// Panel look.
    pub style: ChatUiStyle,
    /// Show the panel at start.
    pub start_open: bool,
    /// Let egui swallow keyboard and mouse input it uses, so typing never moves the player.
    pub absorb_input: bool,
}

impl Default for ChatUiPlugin {
    fn default() -> Self {
        Self {
            toggle_key: KeyCode::F1,
            focus_key: KeyCode::Enter,
            font_files: Vec::new(),
            style: ChatUiStyle::default(),
            start_open: true,
            absorb_input: true,
        }
    }
}

/// Whether the chat has the keyboard (the player is typing).
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChatUiFocus {
    /// A chat text field has keyboard focus.
    pub typing: bool,
}

/// Run condition: the player is typing in the chat. Use `.run_if(not(chat_ui_typing))` on
/// game controls that read input directly.
pub fn chat_ui_typing(focus: Option<Res<ChatUiFocus>>) -> bool {
    focus.is_some_and(|f| f.typing)
}

/// State of the panel; `notice` is a line the game may show at the top (e.g. "embedded server").
#[derive(Resource, Debug, Default)]
pub struct ChatUiState {
    /// The panel is shown.
    pub open: bool,
    /// A line shown under the status (set by the game).
    pub notice: Option<String>,
    pub(crate) tabs: Vec<String>,
    pub(crate) active: Option<ChatLogKey>,
    pub(crate) input: String,
    pub(crate) name_input: String,
    pub(crate) join_input: String,
    pub(crate) unread: HashMap<String, u32>,
    pub(crate) presence: HashMap<String, Vec<PresenceUser>>,
    pub(crate) focus_input: bool,
    pub(crate) fonts_ready: bool,
}

impl ChatUiState {
    /// Unread live messages in a channel (zero for the active tab).
    pub fn unread(&self, channel: &str) -> u32 {
        self.unread.get(channel).copied().unwrap_or(0)
    }

    /// The tab shown now.
    pub fn active_tab(&self) -> Option<&ChatLogKey> {
        self.active.as_ref()
    }
}

/// The panel's configuration, as a resource for its systems.
#[derive(Resource, Debug, Clone)]
pub(crate) struct ChatUiConfig(pub ChatUiPlugin);

impl Plugin for ChatUiPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<EguiPlugin>() {
            app.add_plugins(EguiPlugin::default());
        }
        app.insert_resource(ChatUiConfig(self.clone()))
            .insert_resource(ChatUiState {
                open: self.start_open,
                ..default()
            })
            .init_resource::<ChatUiFocus>()
            .add_systems(Startup, absorb_input_setting)
            .add_systems(Update, (track_chat, keys).after(ChatSet::Receive))
            .add_systems(EguiPrimaryContextPass, panel::draw);
    }
}

fn absorb_input_setting(config: Res<ChatUiConfig>, settings: Option<ResMut<EguiGlobalSettings>>) {
    if let Some(mut settings) = settings {
        settings.enable_absorb_bevy_input_system = config.0.absorb_input;
    }
}

/// Keeps tabs, unread counts and presence lists in step with the chat.
fn track_chat(
    mut state: ResMut<ChatUiState>,
    mut chat: Chat,
    mut joined: MessageReader<ChatJoined>,
    mut left: MessageReader<ChatLeft>,
    mut received: MessageReader<ChatMessageReceived>,
    mut presence: MessageReader<PresenceChanged>,
) {
    for joined in joined.read() {
        if !state.tabs.contains(&joined.channel) {
            state.tabs.push(joined.channel.clone());
        }
        if state.active.is_none() || !joined.rejoined {
            state.active = Some(ChatLogKey::channel(&joined.channel));
        }
        chat.who(&joined.channel);
    }
    for left in left.read() {
        state.tabs.retain(|t| *t != left.channel);
        state.presence.remove(&left.channel);
        state.unread.remove(&left.channel);
        if state.active.as_ref().and_then(ChatLogKey::as_channel) == Some(left.channel.as_str()) {
            state.active = state.tabs.first().map(ChatLogKey::channel);
        }
    }
    for message in received.read() {
        let active = state.active.as_ref().and_then(ChatLogKey::as_channel)
            == Some(message.channel.as_str());
        if !active && !message.from_history {
            *state.unread.entry(message.channel.clone()).or_default() += 1;
        }
    }
    for update in presence.read() {
        let users = state.presence.entry(update.channel.clone()).or_default();
        match &update.change {
            PresenceChange::Snapshot(all) => *users = all.clone(),
            PresenceChange::Joined(user) => {
                users.retain(|u| u.user_id != user.user_id);
                users.push(user.clone());
            }
            PresenceChange::Left(user) => users.retain(|u| u.user_id != user.user_id),
        }
    }
}

/// The toggle and focus keys (only seen while the player is not typing).
fn keys(
    keyboard: Option<Res<ButtonInput<KeyCode>>>,
    config: Res<ChatUiConfig>,
    focus: Res<ChatUiFocus>,
    mut state: ResMut<ChatUiState>,
) {
    let Some(keyboard) = keyboard else {
        return;
    };
    if focus.typing {
        return;
    }
    if keyboard.just_pressed(config.0.toggle_key) {
        state.open = !state.open;
    }
    if keyboard.just_pressed(config.0.focus_key) {
        state.open = true;
        state.focus_input = true;
    }
}
