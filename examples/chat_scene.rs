//! The desktop playtest: a small 2D scene with the chat panel, where every player in the lobby is
//! a square with a name and speech bubbles.
//!
//! ```sh
//! cargo run --example chat_scene
//! ```
//!
//! Connects to `CHAT_SERVER_URL` (default `http://127.0.0.1:8080`). When nothing answers there, it
//! starts the chat server inside this process, so the example works alone; start a second one
//! beside it and the two chat. Move the square with the arrow keys or WASD; Enter puts the cursor
//! in the chat, Escape takes it out, F1 hides the panel. While you type, the square stays put.
//! Everyone else in the lobby gets a square too; what anyone says shows as a bubble above theirs.
//!
//! For scripts and tests (see `scripts/screenshot.sh`): `CHAT_SCENE_NAME` (player name),
//! `CHAT_SCENE_SAY` (a line to say once joined), `CHAT_SCENE_EXPECT` (wait for a message from
//! someone else containing this text), `CHAT_SCENE_SCREENSHOT` (save a PNG there, then exit),
//! `CHAT_SCENE_TIMEOUT` (seconds before giving up with exit code 1, default 60).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured, save_to_disk};
use bevy::text::{FontCx, FontSource};
use bevy::window::WindowResolution;
use bevy_chat_examples::{
    assets_dir, data_dir, instance_slot, local_address, server_answers, start_embedded_server,
};
use bevy_chat_plugin::bubbles::{
    ChatBubbleStyle, ChatBubbleSystems, ChatBubblesPlugin, ChatSpeaker,
};
use bevy_chat_plugin::prelude::*;
use bevy_chat_plugin::{ChatUiPlugin, ChatUiState, PresenceChange, PresenceUser, chat_ui_typing};
use parley::fontique::Script;

/// The lobby, where the scene talks and whose members are drawn.
const LOBBY: &str = "lobby";

/// Side of a player's square (world units = pixels with the 2D camera).
const SQUARE: f32 = 48.0;

/// What the scene tells the player at the top of the panel.
#[derive(Resource)]
struct Notice(Option<String>);

/// The player's square.
#[derive(Component)]
struct Player;

/// Another player's square, by user id.
#[derive(Resource, Default)]
struct Others(HashMap<String, Entity>);

/// The name under a square.
#[derive(Component)]
struct NameLabel;

/// The fonts of names and bubbles: DejaVu Sans, then Droid Sans Fallback for CJK.
#[derive(Resource)]
struct SceneFonts {
    text: Handle<Font>,
    cjk: Handle<Font>,
    cjk_linked: bool,
}

/// A decoration circling the centre.
#[derive(Component)]
struct Orbit {
    radius: f32,
    speed: f32,
    phase: f32,
}

/// Scripted play for screenshots and tests.
#[derive(Resource, Default)]
struct Autoplay {
    say: Option<String>,
    expect: Option<String>,
    screenshot: Option<PathBuf>,
    said: bool,
    seen_at_frame: Option<u32>,
    requested: bool,
    captured: bool,
    frames: u32,
    deadline: Option<Timer>,
}

fn main() -> AppExit {
    let url = std::env::var("CHAT_SERVER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let (slot, _slot_guard) = instance_slot();
    let mut url_in_use = url.clone();
    let notice = if server_answers(&url, Duration::from_millis(500)) {
        None
    } else if let Some(addr) = local_address(&url) {
        let dir = data_dir("bevy_chat_scene").join("server");
        let started = start_embedded_server(addr, &dir).or_else(|error| {
            // The port is taken by something that is not a chat server: use any free port.
            eprintln!("cannot start a chat server on {addr}: {error}; trying another port");
            start_embedded_server("127.0.0.1:0".parse().unwrap(), &dir)
        });
        match started {
            Ok(server) => {
                url_in_use = format!("http://{}", server.addr);
                Some(format!(
                    "No server answered at {url}: running one in this window at {url_in_use}"
                ))
            }
            Err(error) => Some(format!(
                "No server at {url}, and none could be started: {error}"
            )),
        }
    } else {
        Some(format!("Cannot reach {url}; retrying in the background"))
    };
    if let Some(notice) = &notice {
        println!("{notice}");
    }

    // One saved guest per window slot and server (two windows side by side are two players).
    let credentials = data_dir("bevy_chat_scene").join(format!("slot-{slot}"));
    let fonts = assets_dir().join("fonts");
    let name = std::env::var("CHAT_SCENE_NAME").unwrap_or_else(|_| format!("Player{}", slot + 1));
    let timeout = std::env::var("CHAT_SCENE_TIMEOUT")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(60.0);
    let scripted = Autoplay {
        say: std::env::var("CHAT_SCENE_SAY").ok(),
        expect: std::env::var("CHAT_SCENE_EXPECT").ok(),
        screenshot: std::env::var("CHAT_SCENE_SCREENSHOT")
            .ok()
            .map(PathBuf::from),
        deadline: std::env::var("CHAT_SCENE_SCREENSHOT")
            .ok()
            .map(|_| Timer::from_seconds(timeout, TimerMode::Once)),
        ..default()
    };

    App::new()
        .add_plugins(DefaultPlugins.set(WindowPlugin {
            primary_window: Some(Window {
                title: format!("bevy chat — {name}"),
                resolution: WindowResolution::new(1280, 720),
                ..default()
            }),
            ..default()
        }))
        .add_plugins(
            ChatPlugin::new(url_in_use)
                .with_app_name("bevy_chat_scene")
                .with_credentials_dir(credentials),
        )
        .add_plugins(ChatUiPlugin {
            font_files: vec![
                fonts.join("DejaVuSans.ttf"),
                fonts.join("DroidSansFallbackFull.ttf"),
            ],
            ..default()
        })
        .add_plugins(ChatBubblesPlugin)
        .insert_resource(ChatBubbleStyle {
            max_width: 360.0,
            font_size: 17.0,
            lifetime: 12.0,
            // The anchor is already the top of the square.
            vertical_offset: 10.0,
            ..default()
        })
        .init_resource::<Others>()
        .insert_resource(ClearColor(Color::srgb(0.06, 0.07, 0.12)))
        .insert_resource(Notice(notice))
        .insert_resource(PlayerName(name))
        .insert_resource(scripted)
        .add_systems(Startup, (load_fonts, (setup_scene, setup_chat)).chain())
        .add_systems(
            Update,
            (
                orbit,
                move_player.run_if(not(chat_ui_typing)),
                link_cjk_fallback,
                tag_local_player,
                // Squares for newcomers exist before their bubbles are drawn.
                track_others.before(ChatBubbleSystems::Spawn),
                autoplay,
            ),
        )
        .run()
}

#[derive(Resource)]
struct PlayerName(String);

/// Reads the repository's fonts into font assets (no asset folder needed at run time).
fn load_fonts(mut commands: Commands, mut fonts: ResMut<Assets<Font>>) {
    let dir = assets_dir().join("fonts");
    let mut load = |file: &str| -> Handle<Font> {
        let path = dir.join(file);
        match std::fs::read(&path) {
            Ok(bytes) => fonts.add(Font::from_bytes(bytes)),
            Err(error) => {
                warn!(
                    "cannot read {}: {error}; using the default font",
                    path.display()
                );
                Handle::default()
            }
        }
    };
    let text = load("DejaVuSans.ttf");
    let cjk = load("DroidSansFallbackFull.ttf");
    commands.insert_resource(SceneFonts {
        text,
        cjk,
        cjk_linked: false,
    });
}

/// Once the fonts are in the text system's collection, Chinese and Japanese characters
/// that DejaVu lacks fall back to Droid Sans Fallback.
fn link_cjk_fallback(
    mut fonts: ResMut<SceneFonts>,
    assets: Res<Assets<Font>>,
    mut font_cx: ResMut<FontCx>,
    mut style: ResMut<ChatBubbleStyle>,
) {
    if fonts.cjk_linked {
        return;
    }
    let Some(text) = assets.get(&fonts.text) else {
        return;
    };
    if style.font != FontSource::Handle(fonts.text.clone()) {
        style.font = FontSource::Handle(fonts.text.clone());
    }
    let Some(cjk) = assets.get(&fonts.cjk) else {
        return;
    };
    let (Some(_), Some(cjk_family)) = (
        font_cx.collection.family_id(&text.alias),
        font_cx.collection.family_id(&cjk.alias),
    ) else {
        // Registered in PostUpdate: try again next frame.
        return;
    };
    for script in [*b"Hani", *b"Hira", *b"Kana", *b"Hang"] {
        font_cx
            .collection
            .append_fallbacks(Script::from_bytes(script), std::iter::once(cjk_family));
    }
    fonts.cjk_linked = true;
}

/// A square for a player, with the name under it.
fn player_square(
    commands: &mut Commands,
    color: Color,
    at: Vec2,
    name: &str,
    font: &Handle<Font>,
) -> Entity {
    commands
        .spawn((
            Sprite::from_color(color, Vec2::splat(SQUARE)),
            Transform::from_translation(at.extend(1.0)),
            children![(
                NameLabel,
                Text2d::new(name),
                TextFont {
                    font: FontSource::Handle(font.clone()),
                    font_size: FontSize::Px(15.0),
                    ..default()
                },
                TextColor(Color::srgb(0.85, 0.87, 0.92)),
                Transform::from_xyz(0.0, -SQUARE / 2.0 - 12.0, 0.1),
            )],
        ))
        .id()
}

fn setup_scene(mut commands: Commands, name: Res<PlayerName>, fonts: Res<SceneFonts>) {
    commands.spawn(Camera2d);
    let player = player_square(
        &mut commands,
        Color::srgb(0.95, 0.6, 0.2),
        Vec2::new(250.0, 80.0),
        &name.0,
        &fonts.text,
    );
    commands.entity(player).insert(Player);
    for n in 0..14 {
        let hue = n as f32 * 360.0 / 14.0;
        commands.spawn((
            Sprite::from_color(
                Color::hsl(hue, 0.7, 0.6),
                Vec2::splat(10.0 + (n % 4) as f32 * 6.0),
            ),
            Transform::from_xyz(0.0, 0.0, 0.0),
            Orbit {
                radius: 120.0 + (n % 5) as f32 * 45.0,
                speed: 0.3 + (n % 3) as f32 * 0.2,
                phase: n as f32,
            },
        ));
    }
}

fn setup_chat(
    mut chat: Chat,
    name: Res<PlayerName>,
    notice: Res<Notice>,
    mut ui: ResMut<ChatUiState>,
) {
    chat.set_name(&name.0);
    chat.join("lobby");
    ui.notice = notice.0.clone();
}

/// The local player's square speaks for the chat's own user id, once logged in.
fn tag_local_player(
    mut commands: Commands,
    chat: Chat,
    player: Single<(Entity, Option<&ChatSpeaker>), With<Player>>,
) {
    let (entity, speaker) = *player;
    if let Some(me) = chat.user_id()
        && speaker.is_none_or(|s| s.user_id != me)
    {
        commands
            .entity(entity)
            .insert(ChatSpeaker::new(me).with_offset(Vec3::Y * SQUARE / 2.0));
    }
}

/// Where the `n`-th other player stands.
fn spot(n: usize) -> Vec2 {
    const SPOTS: [Vec2; 4] = [
        Vec2::new(60.0, -150.0),
        Vec2::new(470.0, -170.0),
        Vec2::new(130.0, 240.0),
        Vec2::new(-60.0, 150.0),
    ];
    SPOTS[n % SPOTS.len()] + Vec2::new(25.0, -20.0) * (n / SPOTS.len()) as f32
}

/// A square per other user in the lobby: from presence (the panel asks who is here on joining)
/// and from anyone who speaks; gone when they leave.
fn track_others(
    mut commands: Commands,
    chat: Chat,
    fonts: Res<SceneFonts>,
    mut others: ResMut<Others>,
    mut presence: MessageReader<PresenceChanged>,
    mut received: MessageReader<ChatMessageReceived>,
    mut labels: Query<(&ChildOf, &mut Text2d), With<NameLabel>>,
) {
    let me = chat.user_id().map(str::to_owned);
    let mut arrived: Vec<(String, String)> = Vec::new();
    let mut departed: Vec<String> = Vec::new();
    let named = |user: &PresenceUser| {
        let name = user
            .username
            .clone()
            .unwrap_or_else(|| short(&user.user_id));
        (user.user_id.clone(), name)
    };
    for update in presence.read().filter(|p| p.channel == LOBBY) {
        match &update.change {
            PresenceChange::Snapshot(users) => {
                let here: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
                departed.extend(
                    others
                        .0
                        .keys()
                        .filter(|id| !here.contains(&id.as_str()))
                        .cloned(),
                );
                arrived.extend(users.iter().map(named));
            }
            PresenceChange::Joined(user) => arrived.push(named(user)),
            PresenceChange::Left(user) => departed.push(user.user_id.clone()),
        }
    }
    for message in received
        .read()
        .filter(|m| m.channel == LOBBY && !m.from_history)
    {
        arrived.push((message.user_id.clone(), message.username.clone()));
    }
    for user_id in departed {
        if let Some(entity) = others.0.remove(&user_id) {
            commands.entity(entity).despawn();
        }
    }
    for (user_id, name) in arrived {
        if me.as_deref() == Some(user_id.as_str()) {
            continue;
        }
        if let Some(&entity) = others.0.get(&user_id) {
            // Known: keep the label up to date with the latest name.
            for (parent, mut label) in &mut labels {
                if parent.parent() == entity && label.0 != name {
                    label.0 = name.clone();
                }
            }
            continue;
        }
        let hue = (others.0.len() as f32 * 137.0 + 200.0) % 360.0;
        let entity = player_square(
            &mut commands,
            Color::hsl(hue, 0.55, 0.6),
            spot(others.0.len()),
            &name,
            &fonts.text,
        );
        commands
            .entity(entity)
            .insert(ChatSpeaker::new(user_id.clone()).with_offset(Vec3::Y * SQUARE / 2.0));
        others.0.insert(user_id, entity);
    }
}

/// The start of a user id, for users without a name.
fn short(user_id: &str) -> String {
    user_id.chars().take(8).collect()
}

fn orbit(time: Res<Time>, mut query: Query<(&Orbit, &mut Transform)>) {
    let t = time.elapsed_secs();
    for (orbit, mut transform) in &mut query {
        let angle = orbit.phase + t * orbit.speed;
        transform.translation.x = 260.0 + orbit.radius * angle.cos();
        transform.translation.y = 40.0 + orbit.radius * angle.sin() * 0.6;
    }
}

fn move_player(
    time: Res<Time>,
    keys: Res<ButtonInput<KeyCode>>,
    mut player: Single<&mut Transform, With<Player>>,
) {
    let mut direction = Vec2::ZERO;
    for (key, step) in [
        (KeyCode::ArrowLeft, Vec2::NEG_X),
        (KeyCode::KeyA, Vec2::NEG_X),
        (KeyCode::ArrowRight, Vec2::X),
        (KeyCode::KeyD, Vec2::X),
        (KeyCode::ArrowUp, Vec2::Y),
        (KeyCode::KeyW, Vec2::Y),
        (KeyCode::ArrowDown, Vec2::NEG_Y),
        (KeyCode::KeyS, Vec2::NEG_Y),
    ] {
        if keys.pressed(key) {
            direction += step;
        }
    }
    player.translation += (direction.normalize_or_zero() * 300.0 * time.delta_secs()).extend(0.0);
}

/// Says a line, waits for an expected answer, saves a screenshot and exits (scripted runs only).
fn autoplay(
    mut commands: Commands,
    time: Res<Time>,
    mut auto: ResMut<Autoplay>,
    mut chat: Chat,
    mut joined: MessageReader<ChatJoined>,
    mut received: MessageReader<ChatMessageReceived>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(path) = auto.screenshot.clone() else {
        return;
    };
    auto.frames += 1;
    for joined in joined.read() {
        if let (Some(say), false) = (auto.say.clone(), auto.said) {
            chat.send(&joined.channel, say);
            auto.said = true;
        }
    }
    let me = chat.user_id().map(str::to_owned);
    for message in received.read() {
        let from_other = me.as_deref() != Some(message.user_id.as_str());
        let wanted = auto
            .expect
            .as_deref()
            .is_none_or(|e| message.text.contains(e));
        if from_other && wanted && auto.seen_at_frame.is_none() {
            info!(
                "autoplay: received {:?} from {}",
                message.text, message.username
            );
            auto.seen_at_frame = Some(auto.frames);
        }
    }
    if auto.expect.is_none() && auto.said && auto.seen_at_frame.is_none() {
        auto.seen_at_frame = Some(auto.frames);
    }
    // A few frames after the answer, so the panel shows it.
    if let Some(seen) = auto.seen_at_frame
        && !auto.requested
        && auto.frames > seen + 20
    {
        auto.requested = true;
        info!("autoplay: saving a screenshot to {}", path.display());
        commands
            .spawn(Screenshot::primary_window())
            .observe(save_to_disk(path.clone()))
            .observe(|_: On<ScreenshotCaptured>, mut auto: ResMut<Autoplay>| auto.captured = true);
    }
    if auto.captured && std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        info!("autoplay: done after {} frames", auto.frames);
        exit.write(AppExit::Success);
    }
    if let Some(deadline) = auto.deadline.as_mut()
        && deadline.tick(time.delta()).just_finished()
    {
        error!(
            "autoplay: timed out (said: {}, answer seen: {:?})",
            auto.said, auto.seen_at_frame
        );
        exit.write(AppExit::error());
    }
}
