//! A headless chat bot: logs in as a guest, joins a channel and echoes what others say.
//!
//! ```sh
//! cargo run --release -p server                          # in one terminal
//! cargo run --example headless_bot                       # in another
//! ```
//!
//! Settings (environment): `CHAT_SERVER_URL` (default `http://127.0.0.1:8080`), `BOT_NAME`
//! (`EchoBot`), `BOT_CHANNEL` (`lobby`), `BOT_SAY` (a line to say after joining, e.g. for demos),
//! `BOT_SAY_EVERY` (repeat `BOT_SAY` every N seconds), `BOT_SECONDS` (exit after N seconds),
//! `BOT_ECHO=0` (do not echo), `BOT_TYPING=1` (always "typing", for demos of the typing line).

use std::time::Duration;

use bevy::app::{AppExit, ScheduleRunnerPlugin};
use bevy::prelude::*;
use bevy_chat_plugin::prelude::*;

#[derive(Resource)]
struct Bot {
    name: String,
    channel: String,
    say: Option<String>,
    say_every: Option<Timer>,
    lifetime: Option<Timer>,
    echo: bool,
    typing: bool,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn seconds(name: &str) -> Option<f32> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let server_url = env("CHAT_SERVER_URL", "http://127.0.0.1:8080");
    let bot = Bot {
        name: env("BOT_NAME", "EchoBot"),
        channel: env("BOT_CHANNEL", "lobby"),
        say: std::env::var("BOT_SAY").ok(),
        say_every: seconds("BOT_SAY_EVERY").map(|s| Timer::from_seconds(s, TimerMode::Repeating)),
        lifetime: seconds("BOT_SECONDS").map(|s| Timer::from_seconds(s, TimerMode::Once)),
        echo: env("BOT_ECHO", "1") != "0",
        typing: env("BOT_TYPING", "0") == "1",
    };
    let chat = ChatPlugin::new(server_url).with_app_name("bevy_chat_headless_bot");
    App::new()
        .add_plugins((
            MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(Duration::from_secs_f64(
                1.0 / 60.0,
            ))),
            bevy::log::LogPlugin::default(),
            chat,
        ))
        .insert_resource(bot)
        .add_systems(Startup, introduce)
        .add_systems(
            Update,
            (
                say_hello.run_if(on_message::<ChatJoined>),
                echo.run_if(|bot: Res<Bot>| bot.echo),
                keep_typing.run_if(|bot: Res<Bot>| bot.typing),
                report,
                talk_and_exit,
            ),
        )
        .run();
}

/// Name and channel are remembered by the plugin and applied as soon as it connects.
fn introduce(bot: Res<Bot>, mut chat: Chat) {
    chat.set_name(&bot.name);
    chat.join(&bot.channel);
}

fn say_hello(bot: Res<Bot>, mut joined: MessageReader<ChatJoined>, mut chat: Chat) {
    for joined in joined.read() {
        if let (Some(say), false) = (&bot.say, joined.rejoined) {
            chat.send(&joined.channel, say);
        }
    }
}

/// Echoes live messages from others (not history, not itself, not other echoes).
fn echo(mut received: MessageReader<ChatMessageReceived>, mut chat: Chat) {
    let me = chat.user_id().map(str::to_owned);
    for message in received.read() {
        info!(
            "[{}] {}: {}",
            message.channel, message.username, message.text
        );
        let mine = me.as_deref() == Some(message.user_id.as_str());
        if message.from_history || mine || message.text.starts_with("echo: ") {
            continue;
        }
        chat.send(&message.channel, format!("echo: {}", message.text));
    }
}

/// Says it is typing on every frame; the plugin sends at most one announcement per 2.5 s.
fn keep_typing(bot: Res<Bot>, mut chat: Chat) {
    chat.typing(&bot.channel);
}

fn report(
    mut connected: MessageReader<ChatConnected>,
    mut disconnected: MessageReader<ChatDisconnected>,
    mut errors: MessageReader<ChatError>,
) {
    for c in connected.read() {
        info!(user_id = %c.user_id, reconnect = c.reconnect, "connected");
    }
    for d in disconnected.read() {
        warn!(reason = %d.reason, will_reconnect = d.will_reconnect, "disconnected");
    }
    for e in errors.read() {
        warn!(request = e.request.as_str(), "chat error: {}", e.message);
    }
}

fn talk_and_exit(
    time: Res<Time>,
    mut bot: ResMut<Bot>,
    mut chat: Chat,
    mut exit: MessageWriter<AppExit>,
) {
    let Bot {
        say,
        say_every,
        lifetime,
        channel,
        ..
    } = &mut *bot;
    if let (Some(timer), Some(say)) = (say_every.as_mut(), say.as_ref())
        && timer.tick(time.delta()).just_finished()
        && chat.is_connected()
    {
        chat.send(channel.as_str(), say.as_str());
    }
    if let Some(timer) = lifetime.as_mut()
        && timer.tick(time.delta()).just_finished()
    {
        exit.write(AppExit::Success);
    }
}
