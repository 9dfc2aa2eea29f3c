//! The network thread: one OS thread running a tokio current-thread runtime that owns login,
//! the WebSocket, reconnects and the session state. It talks to the game only through the
//! bridge (two bounded crossbeam channels, commands in and events out), so nothing on the main
//! thread ever waits on the network.
//!
//! Modules, each using only those listed before it: `bridge` (what crosses, and its three
//! ends), `restore` (what outlives a connection), `failures` (the rate-limited failure log),
//! `link` (what a session is given and how it ends), `session` (one WebSocket connection),
//! `worker` (the loop: log in, connect, back off, reconnect).
//!
//! Channel policy: a command that does not fit is dropped on the main thread and reported as a
//! [`ChatErrorCode::QueueFull`](crate::ChatErrorCode::QueueFull). An event that does not fit
//! makes the network thread wait for the game to drain the queue (it stops reading the
//! socket): nothing is dropped; if the game stalls for long the server drops the connection as
//! a slow consumer, and the reconnect resumes with `since`, so no message is lost either way.

mod bridge;
mod failures;
mod link;
mod restore;
mod session;
mod worker;

pub(crate) use bridge::{Command, GameEnd, NetEvent};

use crate::config::ChatPlugin;

/// Starts the network thread; returns the game's end of the bridge. Dropping it stops the
/// thread (without waiting for it).
pub(crate) fn spawn(config: ChatPlugin) -> std::io::Result<GameEnd> {
    let (game, commands, events) = bridge::bridge(config.queue_capacity.max(16));
    let worker = worker::Worker::new(config, commands, events);
    std::thread::Builder::new()
        .name("bevy-chat-net".into())
        .spawn(move || worker.run_blocking())?;
    Ok(game)
}
