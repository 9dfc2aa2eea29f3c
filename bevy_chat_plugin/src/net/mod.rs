//! The network thread: one OS thread running a tokio current-thread runtime that owns login,
//! the WebSocket, reconnects and the session state. It talks to the game only through two
//! bounded crossbeam channels (commands in, events out), so nothing on the main thread ever
//! waits on the network.
//!
//! Channel policy: a command that does not fit is dropped on the main thread and reported as a
//! [`ChatErrorCode::QueueFull`](crate::ChatErrorCode::QueueFull). An event that does not fit
//! makes the network thread wait (it stops reading the socket): nothing is dropped; if the game
//! stalls for long the server drops the connection as a slow consumer, and the reconnect resumes
//! with `since`, so no message is lost either way.

mod session;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use protocol::MessageId;
use tokio::sync::Notify;

use crate::config::ChatPlugin;
use crate::messages::*;
use crate::state::ChatConnectionState;

/// A request from the game to the network thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Connect,
    Disconnect,
    SetToken(String),
    SetName(String),
    Join(String),
    Leave(String),
    Send {
        channel: String,
        text: String,
    },
    Direct {
        to: String,
        text: String,
    },
    Who(String),
    History {
        channel: String,
        before: Option<MessageId>,
        limit: u32,
    },
}

impl Command {
    /// What the command is, for errors.
    pub fn request(&self) -> ChatRequest {
        match self {
            Command::Connect => ChatRequest::Connect,
            Command::Disconnect => ChatRequest::Disconnect,
            Command::SetToken(_) => ChatRequest::SetToken,
            Command::SetName(_) => ChatRequest::SetName,
            Command::Join(_) => ChatRequest::Join,
            Command::Leave(_) => ChatRequest::Leave,
            Command::Send { .. } => ChatRequest::Message,
            Command::Direct { .. } => ChatRequest::Direct,
            Command::Who(_) => ChatRequest::Who,
            Command::History { .. } => ChatRequest::History,
        }
    }

    /// The channel or user the command concerns.
    pub fn target(&self) -> Option<String> {
        match self {
            Command::Join(c) | Command::Leave(c) | Command::Who(c) => Some(c.clone()),
            Command::Send { channel, .. } | Command::History { channel, .. } => {
                Some(channel.clone())
            }
            Command::Direct { to, .. } => Some(to.clone()),
            _ => None,
        }
    }
}

/// Something the network thread tells the game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetEvent {
    State(ChatConnectionState),
    LoggedIn {
        user_id: String,
    },
    Connected(ChatConnected),
    Disconnected(ChatDisconnected),
    Message(ChatMessageReceived),
    Direct(DirectMessageReceived),
    Broadcast(BroadcastReceived),
    Joined(ChatJoined),
    Left(ChatLeft),
    NameSet(NameSet),
    Presence(PresenceChanged),
    /// Messages after a resume point were dropped from the server's history.
    HistoryGap {
        channel: String,
    },
    Error(ChatError),
}

/// The game's end of the network thread.
pub(crate) struct NetHandle {
    commands: Sender<Command>,
    /// Events from the network thread.
    pub events: Receiver<NetEvent>,
    wake: Arc<Notify>,
    shutdown: Arc<AtomicBool>,
}

impl NetHandle {
    /// Starts the network thread.
    pub fn spawn(config: ChatPlugin) -> std::io::Result<Self> {
        let capacity = config.queue_capacity.max(16);
        let (command_tx, command_rx) = bounded(capacity);
        let (event_tx, event_rx) = bounded(capacity * 4);
        let wake = Arc::new(Notify::new());
        let shutdown = Arc::new(AtomicBool::new(false));
        let worker =
            worker::Worker::new(config, command_rx, event_tx, wake.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("bevy-chat-net".into())
            .spawn(move || worker.run_blocking())?;
        Ok(Self {
            commands: command_tx,
            events: event_rx,
            wake,
            shutdown,
        })
    }

    /// Queues a command without waiting. Returns it back when the queue is full.
    pub fn try_send(&self, command: Command) -> Result<(), Command> {
        match self.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(command) | TrySendError::Disconnected(command)) => Err(command),
        }
    }

    /// Wakes the network thread to read queued commands.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Drop for NetHandle {
    fn drop(&mut self) {
        // The thread notices at its next wake-up and closes the socket; never join here, a
        // login in progress could keep the main thread waiting.
        self.shutdown.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}
