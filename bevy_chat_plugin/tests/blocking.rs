//! The main thread never waits on the network: every `app.update()` stays fast while a login
//! hangs or the server stops answering.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_chat_plugin::*;
use common::net::{BlackHole, Proxy};
use common::*;

/// Longest acceptable `app.update()`.
const FRAME_BUDGET: Duration = Duration::from_millis(50);
const FRAMES: usize = 200;

/// The timing tests run one at a time, so that they do not compete for the CPU.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `FRAMES` updates, queueing chat commands with `commands` before some of them, and
/// returns each update's duration.
fn timed_updates(app: &mut App, mut commands: impl FnMut(&mut App, usize)) -> Vec<Duration> {
    let mut times = Vec::with_capacity(FRAMES);
    for frame in 0..FRAMES {
        commands(app, frame);
        let start = Instant::now();
        app.update();
        times.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(1));
    }
    times
}

fn assert_fast(times: &[Duration]) {
    let slow: Vec<(usize, Duration)> = times
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, t)| *t >= FRAME_BUDGET)
        .collect();
    let max = times.iter().max().unwrap();
    assert!(
        slow.is_empty(),
        "updates over {FRAME_BUDGET:?}: {slow:?} (max {max:?})"
    );
    eprintln!("{} updates, slowest {max:?}", times.len());
}

#[test]
fn a_hanging_login_never_blocks_an_update() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hole = BlackHole::start();
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = guest_plugin(&hole.url(), &dir.path().join("guest.json"));
    // Long enough that the login is still pending when the test ends.
    plugin.connect_timeout = Duration::from_secs(120);
    let mut app = app_with(plugin);
    update_until(&mut app, TIMEOUT, "a login stuck in the black hole", |w| {
        state(w) == ChatConnectionState::LoggingIn && hole.accepted() >= 1
    });

    let times = timed_updates(&mut app, |app, frame| {
        if frame % 10 == 0 {
            chat(app, move |chat| {
                chat.set_name(format!("N{frame}"));
                chat.join("lobby");
                chat.send("lobby", "anyone?");
                chat.who("lobby");
            });
        }
    });
    assert_fast(&times);
    assert_eq!(state(app.world()), ChatConnectionState::LoggingIn);
    assert!(rec(app.world()).connected.is_empty());
    assert!(
        !rec(app.world())
            .errors
            .iter()
            .any(|e| e.code == ChatErrorCode::QueueFull),
        "{:?}",
        rec(app.world()).errors
    );

    // Closing the app does not wait for the login either.
    let start = Instant::now();
    drop(app);
    assert!(
        start.elapsed() < FRAME_BUDGET,
        "drop took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_server_that_stops_answering_never_blocks_an_update() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    let proxy = Proxy::start(server.runtime(), server.addr());
    let dir = tempfile::tempdir().unwrap();
    let mut app = guest_app(&proxy.url(), &dir.path().join("guest.json"));
    ready_app(&mut app, "Ann", "lobby");

    proxy.set_black_hole(true);
    let times = timed_updates(&mut app, |app, frame| {
        let text = format!("into the void {frame}");
        chat(app, move |chat| {
            chat.send("lobby", text);
            chat.who("lobby");
        });
    });
    assert_fast(&times);
    // Nothing came back, and the plugin has not noticed yet (its keep-alive is slower).
    assert!(rec(app.world()).messages.is_empty());
    assert_eq!(state(app.world()), ChatConnectionState::Connected);

    let start = Instant::now();
    drop(app);
    assert!(
        start.elapsed() < FRAME_BUDGET,
        "drop took {:?}",
        start.elapsed()
    );
}

/// When the game does not drain the plugin's events (a long frame, a paused app), the network
/// thread waits for room instead of dropping anything, and goes on when the game drains again.
#[test]
fn a_full_event_queue_waits_for_the_game_and_loses_nothing() {
    const COUNT: usize = 300;
    let server = TestServer::start_with(|config| {
        config.limits.messages_per_second = 100_000;
        config.limits.message_burst = 100_000;
        config.limits.frames_per_second = 100_000;
        config.limits.frame_burst = 100_000;
    });
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = guest_plugin(&server.url(), &dir.path().join("a.json"));
    // The smallest queues: 16 commands, 64 events.
    plugin.queue_capacity = 16;
    let mut a = app_with(plugin);
    let mut b = guest_app(&server.url(), &dir.path().join("b.json"));
    ready_app(&mut a, "Ann", "lobby");
    ready_app(&mut b, "Bob", "lobby");

    let texts: Vec<String> = (0..COUNT).map(|n| format!("m{n}")).collect();
    let sent = texts.clone();
    chat(&mut b, move |chat| {
        for text in sent {
            chat.send("lobby", text);
        }
    });
    // Only B is updated meanwhile: A's queue fills up and its network thread waits.
    update_until(&mut b, TIMEOUT, "B's own copies", |w| {
        rec(w).messages.len() == COUNT
    });
    update_until(&mut a, TIMEOUT, "A to get every message", |w| {
        rec(w).messages.len() >= COUNT
    });
    assert_eq!(rec(a.world()).texts("lobby"), texts);
    assert_eq!(state(a.world()), ChatConnectionState::Connected);
    assert!(
        rec(a.world()).errors.is_empty(),
        "{:?}",
        rec(a.world()).errors
    );
}
