//! The chat panel's plugin in a headless app (no window, no GPU): plugin order with bevy_egui,
//! egui's global settings, and who sees the keys.
#![cfg(feature = "ui")]

mod common;

use bevy::asset::AssetPlugin;
use bevy::input::keyboard::{Key, KeyboardInput};
use bevy::input::{ButtonState, InputPlugin};
use bevy::prelude::*;
use bevy::shader::Shader;
use bevy::window::{ExitCondition, WindowPlugin};
use bevy_chat_plugin::bevy_egui::{EguiGlobalSettings, EguiPlugin};
use bevy_chat_plugin::prelude::*;

/// A headless app with what bevy_egui's plugin needs to build. The chat is off (a bad URL), so
/// no network thread starts.
fn app() -> App {
    app_for(ChatPlugin::new("not a url"))
}

/// A headless app with what bevy_egui's plugin needs to build, and `chat`.
fn app_for(chat: ChatPlugin) -> App {
    let mut app = App::new();
    let no_window = WindowPlugin {
        primary_window: None,
        exit_condition: ExitCondition::DontExit,
        ..default()
    };
    app.add_plugins((
        MinimalPlugins,
        AssetPlugin::default(),
        InputPlugin,
        no_window,
    ))
    .init_asset::<Shader>()
    .init_asset::<Image>()
    .add_plugins(chat);
    app
}

fn start(app: &mut App) {
    app.finish();
    app.cleanup();
    app.update();
}

#[test]
fn egui_plugin_added_after_the_chat_panel_does_not_panic() {
    let mut app = app();
    app.add_plugins(ChatUiPlugin::default())
        .add_plugins(EguiPlugin::default());
    start(&mut app);
    assert!(app.is_plugin_added::<EguiPlugin>());
}

#[test]
fn egui_plugin_added_before_the_chat_panel_is_kept() {
    let mut app = app();
    app.add_plugins(EguiPlugin::default())
        .add_plugins(ChatUiPlugin::default());
    start(&mut app);
    assert_eq!(app.get_added_plugins::<EguiPlugin>().len(), 1);
}

#[test]
fn the_chat_panel_adds_egui_when_the_game_does_not() {
    let mut app = app();
    app.add_plugins(ChatUiPlugin::default());
    start(&mut app);
    assert!(app.is_plugin_added::<EguiPlugin>());
    assert!(app.world().contains_resource::<EguiGlobalSettings>());
}

#[test]
fn egui_global_settings_are_the_games() {
    let mut app = app();
    app.add_plugins(ChatUiPlugin::default());
    start(&mut app);
    app.update();
    let settings = app.world().resource::<EguiGlobalSettings>();
    assert!(
        !settings.enable_absorb_bevy_input_system,
        "the chat panel must not turn on input absorption for every egui window"
    );
}

/// Presses of each key the game saw, from a system gated on the chat and one that is not.
#[derive(Resource, Default, Debug)]
struct GameSaw {
    gated: Vec<KeyCode>,
    ungated: Vec<KeyCode>,
}

fn gated(keys: Res<ButtonInput<KeyCode>>, mut saw: ResMut<GameSaw>) {
    saw.gated.extend(keys.get_just_pressed());
}

fn ungated(keys: Res<ButtonInput<KeyCode>>, mut saw: ResMut<GameSaw>) {
    saw.ungated.extend(keys.get_just_pressed());
}

fn press(app: &mut App, key_code: KeyCode, logical_key: Key) {
    let window = Entity::PLACEHOLDER;
    app.world_mut().write_message(KeyboardInput {
        key_code,
        logical_key,
        state: ButtonState::Pressed,
        text: None,
        repeat: false,
        window,
    });
}

fn game_app() -> App {
    let mut app = app();
    app.add_plugins(ChatUiPlugin::default())
        .init_resource::<GameSaw>()
        .add_systems(Update, (gated.run_if(not(chat_has_keyboard)), ungated));
    start(&mut app);
    app
}

#[test]
fn the_enter_that_opens_chat_never_reaches_the_game() {
    let mut app = game_app();
    press(&mut app, KeyCode::Enter, Key::Enter);
    app.update();
    assert!(
        app.world().resource::<ChatUiFocus>().typing,
        "chat has the keyboard in the frame Enter is pressed"
    );
    let saw = app.world().resource::<GameSaw>();
    assert!(
        saw.gated.is_empty(),
        "gated game system saw {:?}",
        saw.gated
    );
    assert!(
        saw.ungated.is_empty(),
        "Enter is taken out of ButtonInput: {:?}",
        saw.ungated
    );
}

#[test]
fn keys_typed_into_chat_do_not_reach_the_game() {
    let mut app = game_app();
    press(&mut app, KeyCode::Enter, Key::Enter);
    app.update();
    // Headless there is no egui context to take the focus; the chat keeps the keyboard it
    // claimed until its input line says otherwise.
    press(&mut app, KeyCode::KeyW, Key::Character("w".into()));
    app.update();
    let saw = app.world().resource::<GameSaw>();
    assert!(saw.gated.is_empty() && saw.ungated.is_empty(), "{saw:?}");
    assert!(
        !app.world()
            .resource::<ButtonInput<KeyCode>>()
            .pressed(KeyCode::KeyW)
    );
}

#[test]
fn the_toggle_key_hides_the_panel_and_other_keys_reach_the_game() {
    let mut app = game_app();
    assert!(app.world().resource::<ChatUiState>().open);
    press(&mut app, KeyCode::F1, Key::F1);
    app.update();
    assert!(!app.world().resource::<ChatUiState>().open);
    press(&mut app, KeyCode::KeyW, Key::Character("w".into()));
    app.update();
    let saw = app.world().resource::<GameSaw>();
    assert_eq!(
        saw.gated,
        vec![KeyCode::KeyW],
        "F1 was the chat's, W the game's"
    );
    assert_eq!(saw.ungated, vec![KeyCode::KeyW]);
}

fn ui_state(app: &App) -> &ChatUiState {
    app.world().resource::<ChatUiState>()
}

#[test]
fn a_chat_that_cannot_start_says_why_in_the_panel() {
    let mut app = app();
    app.add_plugins(ChatUiPlugin::default())
        .add_systems(Startup, |mut chat: Chat| chat.join("lobby"));
    start(&mut app);
    app.update();
    let problem = ui_state(&app).connection_problem().unwrap_or_default();
    assert_eq!(
        problem,
        "the chat server URL \"not a url\" has no scheme: write http://host:port or https://host",
        "the start failure's reason, not a refused command's"
    );
}

#[test]
fn the_panel_follows_the_name_and_the_outage_of_a_real_connection() {
    let mut server = common::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("guest.json");
    let mut app = app_for(common::guest_plugin(&server.url(), &credentials));
    app.add_plugins((ChatUiPlugin::default(), common::Recorder));
    start(&mut app);
    common::wait_connected(&mut app);
    assert_eq!(ui_state(&app).player_name(), None);
    common::set_name(&mut app, "Ann");
    common::update_until(
        &mut app,
        common::TIMEOUT,
        "the panel to know the name",
        |w| w.resource::<ChatUiState>().player_name() == Some("Ann"),
    );

    server.stop();
    common::update_until(
        &mut app,
        common::TIMEOUT,
        "the panel to see the outage",
        |w| {
            common::state(w) != ChatConnectionState::Connected
                && w.resource::<ChatUiState>().connection_problem().is_some()
        },
    );
    server.restart();
    common::update_until(
        &mut app,
        common::TIMEOUT,
        "the panel to see the reconnect",
        |w| {
            common::state(w) == ChatConnectionState::Connected
                && w.resource::<ChatUiState>().connection_problem().is_none()
        },
    );
    assert_eq!(ui_state(&app).player_name(), Some("Ann"));
}
