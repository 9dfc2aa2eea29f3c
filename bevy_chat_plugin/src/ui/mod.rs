//! [`ChatUiPlugin`]: an egui chat panel for a game overlay (cargo feature `ui`).
//!
//! Shows the connection status (and a banner from any tab while not connected), joined channels
//! as tabs with unread counts, the messages of the active tab with names, times and system lines
//! (joins, leaves, errors), who is present, and an input line. Slash commands: `/join C`,
//! `/leave`, `/name N`, `/w USER_ID text`, `/who`. Clicking a name opens a menu ("Whisper"
//! prefills `/w user_id `).
//!
//! Keyboard: the focus key (Enter) opens the panel and puts the cursor in the input line; Enter
//! sends and gives the keyboard back to the game (unless
//! [`ChatUiPlugin::keep_focus_after_send`]); Escape leaves the input line without sending (the
//! text stays). While the chat has the keyboard, [`chat_has_keyboard`] is true — from the frame
//! the focus key is pressed — and the keys pressed while it has it are taken out of
//! `ButtonInput<KeyCode>` and `ButtonInput<Key>` with `reset` (keys held since before stay
//! pressed; `KeyboardInput` messages are left alone), so use `.run_if(not(chat_has_keyboard))`
//! on game controls. The panel does not change `EguiGlobalSettings`: the game's own egui
//! windows behave as before.
//!
//! The panel needs an egui context, which bevy_egui puts on the first camera: spawn one (e.g.
//! `commands.spawn(Camera2d)`). Without it a warning says so after ~60 frames.

mod fonts;
mod input;
mod panel;
mod status;
mod track;

use std::path::PathBuf;

use bevy::input::InputSystems;
use bevy::prelude::*;
use bevy_egui::{EguiPlugin, EguiPrimaryContextPass, PrimaryEguiContext, egui};

use crate::log::ChatLogKey;

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

/// Adds the chat panel. Needs [`ChatPlugin`](crate::ChatPlugin), a window and a camera.
///
/// bevy_egui's `EguiPlugin` is added in [`Plugin::finish`] when the game has not added it, so
/// the game may add its own (with its settings) before or after this plugin.
#[derive(Debug, Clone)]
pub struct ChatUiPlugin {
    /// Shows and hides the panel (while the chat does not have the keyboard).
    pub toggle_key: KeyCode,
    /// Opens the panel and puts the cursor in the input line.
    pub focus_key: KeyCode,
    /// After Enter sends a line, keep the cursor in the input line (chat keeps the keyboard)
    /// instead of giving the keyboard back to the game. Default `false`.
    pub keep_focus_after_send: bool,
    /// Add the fonts compiled into the crate (DejaVu Sans, and Droid Sans Fallback with the
    /// `ui-cjk-font` feature) as fallbacks after the context's fonts. Default `true`.
    pub builtin_fonts: bool,
    /// Font files added after those, in fallback order (e.g. another script's font), so that
    /// names and messages in more scripts render.
    pub font_files: Vec<PathBuf>,
    /// Panel look.
    pub style: ChatUiStyle,
    /// Show the panel at start.
    pub start_open: bool,
}

impl Default for ChatUiPlugin {
    fn default() -> Self {
        Self {
            toggle_key: KeyCode::F1,
            focus_key: KeyCode::Enter,
            keep_focus_after_send: false,
            builtin_fonts: true,
            font_files: Vec::new(),
            style: ChatUiStyle::default(),
            start_open: true,
        }
    }
}

/// Whether the chat has the keyboard.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChatUiFocus {
    /// A chat text field has keyboard focus, or the focus key was pressed this frame and the
    /// input line gets it when the panel is drawn.
    pub typing: bool,
}

/// Run condition: the chat has the keyboard — from the frame the focus key (Enter) is pressed
/// until the line is sent or Escape is pressed. Use `.run_if(not(chat_has_keyboard))` on game
/// controls.
pub fn chat_has_keyboard(focus: Option<Res<ChatUiFocus>>) -> bool {
    focus.is_some_and(|f| f.typing)
}

/// Run condition: the same as [`chat_has_keyboard`] (its older name).
pub fn chat_ui_typing(focus: Option<Res<ChatUiFocus>>) -> bool {
    chat_has_keyboard(focus)
}

/// System sets of the panel, to order against.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChatUiSystems {
    /// `PreUpdate`, after Bevy's input: the panel's keys; updates [`ChatUiFocus`] and takes the
    /// keys chat uses out of `ButtonInput<KeyCode>`.
    Keys,
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
    pub(crate) status: track::StatusInfo,
    pub(crate) focus_input: bool,
    /// Block or unblock chosen in a name's menu, carried out after drawing.
    pub(crate) name_action: Option<NameAction>,
    pub(crate) fonts_ready: bool,
}

impl ChatUiState {
    /// Unread live messages in a channel (zero for the active tab).
    pub fn unread(&self, channel: &str) -> u32 {
        self.status.unread.get(channel).copied().unwrap_or(0)
    }

    /// The tab shown now.
    pub fn active_tab(&self) -> Option<&ChatLogKey> {
        self.active.as_ref()
    }

    /// The player's name as the server last confirmed it (a `NameSet`), if any.
    pub fn player_name(&self) -> Option<&str> {
        self.status.name.as_deref()
    }

    /// Why the chat is not connected, as last heard (a disconnect reason, a login or connection
    /// error, or why the chat could not start); `None` once connected.
    pub fn connection_problem(&self) -> Option<&str> {
        self.status.problem.as_deref()
    }
}

/// What a name's menu asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameAction {
    Block(String),
    Unblock(String),
}

/// The panel's configuration, as a resource for its systems.
#[derive(Resource, Debug, Clone)]
pub(crate) struct ChatUiConfig(pub ChatUiPlugin);

impl Plugin for ChatUiPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(ChatUiConfig(self.clone()))
            .insert_resource(ChatUiState {
                open: self.start_open,
                ..default()
            })
            .init_resource::<ChatUiFocus>()
            .init_resource::<ContextWatch>()
            .add_systems(
                PreUpdate,
                input::keys.in_set(ChatUiSystems::Keys).after(InputSystems),
            )
            // `Update` runs after `PreUpdate`, where `ChatSet::Receive` wrote this frame's chat
            // messages: no ordering needed (a set of another schedule would order nothing).
            .add_systems(Update, (track::track_chat, watch_context))
            .add_systems(EguiPrimaryContextPass, panel::draw);
    }

    fn finish(&self, app: &mut App) {
        // Here rather than in `build`, so that a game adding its own `EguiPlugin` after this
        // plugin does not panic with "plugin was already added". `App::finish` only finishes
        // the plugins there were when it started, so the new one is finished by hand.
        if !app.is_plugin_added::<EguiPlugin>() {
            app.add_plugins(EguiPlugin::default());
            EguiPlugin::default().finish(app);
        }
    }
}

/// Frames the panel has been open with no egui context, and whether that was said.
#[derive(Resource, Debug, Default)]
struct ContextWatch {
    frames: u32,
    warned: bool,
}

/// Frames without a context before the warning.
const NO_CONTEXT_FRAMES: u32 = 60;

impl ContextWatch {
    /// Counts a frame; true once, when the panel has been open long enough with no context.
    fn should_warn(&mut self, open: bool, has_context: bool) -> bool {
        if has_context || !open {
            self.frames = 0;
            return false;
        }
        self.frames += 1;
        if self.frames >= NO_CONTEXT_FRAMES && !self.warned {
            self.warned = true;
            return true;
        }
        false
    }
}

/// Warns once when the panel is open but bevy_egui has no context to draw it in.
fn watch_context(
    mut watch: ResMut<ContextWatch>,
    state: Res<ChatUiState>,
    contexts: Query<(), With<PrimaryEguiContext>>,
) {
    if watch.should_warn(state.open, !contexts.is_empty()) {
        warn!(
            "chat: the chat panel has no egui context; add a camera (e.g. commands.spawn(Camera2d))"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_context_is_reported_once_after_sixty_open_frames() {
        let mut watch = ContextWatch::default();
        let warnings = (0..200).filter(|_| watch.should_warn(true, false)).count();
        assert_eq!(warnings, 1);
        let mut watch = ContextWatch::default();
        assert!((0..59).all(|_| !watch.should_warn(true, false)));
        assert!(watch.should_warn(true, false), "the 60th frame warns");
    }

    #[test]
    fn a_context_or_a_closed_panel_is_not_reported() {
        let mut watch = ContextWatch::default();
        assert!((0..200).all(|_| !watch.should_warn(true, true)));
        assert!((0..200).all(|_| !watch.should_warn(false, false)));
    }
}
