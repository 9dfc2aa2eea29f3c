//! Who has the keyboard: the panel's keys (toggle, focus) and hiding the keys chat used from the
//! game.
//!
//! Runs in `PreUpdate` after Bevy's input systems ([`ChatUiSystems::Keys`](super::ChatUiSystems)),
//! so that [`ChatUiFocus`] and [`chat_has_keyboard`](super::chat_has_keyboard) are already right
//! for the game's `Update` systems in the frame the focus key is pressed.
//!
//! While chat has the keyboard, every key pressed that frame is taken out of
//! `ButtonInput<KeyCode>` and `ButtonInput<Key>` with `reset` (so `just_pressed` and `pressed`
//! are false for it, and no `just_released` follows). Keys held down before the chat took the
//! keyboard stay pressed. Bevy's `KeyboardInput` messages are left alone (egui reads them).

use bevy::input::keyboard::Key;
use bevy::prelude::*;
use bevy_egui::input::EguiWantsInput;

use super::{ChatUiConfig, ChatUiFocus, ChatUiState};

/// The keys the panel reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PanelKeys {
    /// Shows and hides the panel.
    pub toggle: KeyCode,
    /// Opens the panel and puts the cursor in the input line.
    pub focus: KeyCode,
}

/// What the keys did this frame.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct KeyOutcome {
    /// Keys the chat used: to be hidden from the game.
    pub consumed: Vec<KeyCode>,
    /// The chat has the keyboard for the rest of this frame: hide every key pressed now.
    pub chat_has_keyboard: bool,
}

/// Decides what this frame's key presses mean for the chat. `others_have_keyboard`: another
/// egui widget (the game's own) has keyboard focus, so the panel's keys are not the chat's.
pub(super) fn handle_keys(
    keyboard: &ButtonInput<KeyCode>,
    keys: PanelKeys,
    state: &mut ChatUiState,
    focus: &mut ChatUiFocus,
    others_have_keyboard: bool,
) -> KeyOutcome {
    let mut outcome = KeyOutcome::default();
    if !state.open {
        focus.typing = false;
    }
    if !focus.typing && !others_have_keyboard {
        if keyboard.just_pressed(keys.toggle) {
            state.open = !state.open;
            outcome.consumed.push(keys.toggle);
        }
        if keys.focus != keys.toggle && keyboard.just_pressed(keys.focus) {
            state.open = true;
            state.focus_input = true;
            // The input line gets focus when the panel is drawn (PostUpdate); the game must
            // already not see this key, nor the ones that follow, from now on.
            focus.typing = true;
            outcome.consumed.push(keys.focus);
        }
    }
    outcome.chat_has_keyboard = focus.typing;
    outcome
}

/// `PreUpdate`: the toggle and focus keys, and hiding from the game the keys chat takes.
pub(super) fn keys(
    keyboard: Option<ResMut<ButtonInput<KeyCode>>>,
    logical: Option<ResMut<ButtonInput<Key>>>,
    egui_input: Option<Res<EguiWantsInput>>,
    config: Res<ChatUiConfig>,
    mut focus: ResMut<ChatUiFocus>,
    mut state: ResMut<ChatUiState>,
) {
    let Some(mut keyboard) = keyboard else {
        return;
    };
    // Last frame's egui answer: somebody wants the keyboard and it is not the chat.
    let others_have_keyboard =
        !focus.typing && egui_input.is_some_and(|input| input.wants_keyboard_input());
    let outcome = handle_keys(
        &keyboard,
        PanelKeys {
            toggle: config.0.toggle_key,
            focus: config.0.focus_key,
        },
        &mut state,
        &mut focus,
        others_have_keyboard,
    );
    if outcome.chat_has_keyboard {
        let pressed: Vec<KeyCode> = keyboard.get_just_pressed().copied().collect();
        for key in pressed {
            keyboard.reset(key);
        }
        if let Some(mut logical) = logical {
            let pressed: Vec<Key> = logical.get_just_pressed().cloned().collect();
            for key in pressed {
                logical.reset(key);
            }
        }
    } else {
        for key in outcome.consumed {
            keyboard.reset(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: PanelKeys = PanelKeys {
        toggle: KeyCode::F1,
        focus: KeyCode::Enter,
    };

    fn open_state() -> ChatUiState {
        ChatUiState {
            open: true,
            ..default()
        }
    }

    fn pressed(keys: &[KeyCode]) -> ButtonInput<KeyCode> {
        let mut input = ButtonInput::default();
        for key in keys {
            input.press(*key);
        }
        input
    }

    #[test]
    fn the_enter_that_opens_chat_gives_chat_the_keyboard_in_that_frame() {
        let mut state = ChatUiState::default();
        let mut focus = ChatUiFocus::default();
        let outcome = handle_keys(
            &pressed(&[KeyCode::Enter]),
            KEYS,
            &mut state,
            &mut focus,
            false,
        );
        assert!(state.open && state.focus_input);
        assert!(focus.typing, "chat has the keyboard in the same frame");
        assert!(outcome.chat_has_keyboard);
        assert_eq!(outcome.consumed, vec![KeyCode::Enter]);
    }

    #[test]
    fn the_toggle_key_shows_and_hides_without_taking_the_keyboard() {
        let mut state = open_state();
        let mut focus = ChatUiFocus::default();
        let outcome = handle_keys(
            &pressed(&[KeyCode::F1]),
            KEYS,
            &mut state,
            &mut focus,
            false,
        );
        assert!(!state.open);
        assert!(!outcome.chat_has_keyboard);
        assert_eq!(outcome.consumed, vec![KeyCode::F1]);
        handle_keys(
            &pressed(&[KeyCode::F1]),
            KEYS,
            &mut state,
            &mut focus,
            false,
        );
        assert!(state.open);
    }

    #[test]
    fn while_typing_the_panel_keys_are_text() {
        let mut state = open_state();
        let mut focus = ChatUiFocus { typing: true };
        let outcome = handle_keys(
            &pressed(&[KeyCode::F1, KeyCode::KeyW]),
            KEYS,
            &mut state,
            &mut focus,
            false,
        );
        assert!(state.open, "F1 while typing does not hide the panel");
        assert!(outcome.chat_has_keyboard, "every key pressed now is hidden");
    }

    #[test]
    fn the_games_own_egui_text_field_keeps_its_enter() {
        let mut state = open_state();
        let mut focus = ChatUiFocus::default();
        let outcome = handle_keys(
            &pressed(&[KeyCode::Enter]),
            KEYS,
            &mut state,
            &mut focus,
            true,
        );
        assert!(!focus.typing && !state.focus_input);
        assert_eq!(outcome, KeyOutcome::default());
    }

    #[test]
    fn a_closed_panel_does_not_hold_the_keyboard() {
        let mut state = ChatUiState::default();
        let mut focus = ChatUiFocus { typing: true };
        let outcome = handle_keys(&pressed(&[]), KEYS, &mut state, &mut focus, false);
        assert!(!focus.typing && !outcome.chat_has_keyboard);
    }
}
