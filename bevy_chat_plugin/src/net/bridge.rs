//! The bridge between the game and the network thread: what crosses it ([`Command`] in,
//! [`NetEvent`] out), over two bounded crossbeam channels, and the three ends that hold them.
//!
//! - [`GameEnd`]: the ECS side. Never blocks: commands that do not fit come back to the caller,
//!   events are read with `try_recv`.
//! - [`CommandSource`]: the network thread's side of the commands; it awaits a wake-up from the
//!   game instead of polling.
//! - [`EventSink`]: the network thread's side of the events, and the connection state it last
//!   reported. When the event queue is full it awaits room (signalled by the game after a
//!   drain): the socket is not read meanwhile, so nothing is dropped and the server's
//!   slow-consumer rule applies if the game stalls for long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};
use protocol::MessageId;
use tokio::sync::Notify;

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
    Typing(String),
    Block(String),
    Unblock(String),
    Blocked,
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
            Command::Typing(_) => ChatRequest::Typing,
            Command::Block(_) => ChatRequest::Block,
            Command::Unblock(_) => ChatRequest::Unblock,
            Command::Blocked => ChatRequest::Blocked,
        }
    }

    /// The channel or user the command concerns.
    pub fn target(&self) -> Option<String> {
        match self {
            Command::Join(c) | Command::Leave(c) | Command::Who(c) | Command::Typing(c) => {
                Some(c.clone())
            }
            Command::Block(user) | Command::Unblock(user) => Some(user.clone()),
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
    Typing(ChatUserTyping),
    BlockList(ChatBlockListChanged),
    /// Messages after a resume point were dropped from the server's history.
    HistoryGap {
        channel: String,
    },
    Error(ChatError),
}

/// Wake-ups from the game to the network thread (a `Notify` keeps one permit, so a signal
/// given before the thread waits is not lost).
#[derive(Default)]
struct Signals {
    /// Commands were queued, or the game is gone.
    commands: Notify,
    /// Events were drained: there is room in the event queue, or the game is gone.
    room: Notify,
    /// The game's end was dropped (the app is closing).
    closed: AtomicBool,
}

/// Creates the bridge: the game's end and the network thread's two ends.
pub(crate) fn bridge(capacity: usize) -> (GameEnd, CommandSource, EventSink) {
    let (command_tx, command_rx) = bounded(capacity);
    let (event_tx, event_rx) = bounded(capacity * 4);
    let signals = Arc::new(Signals::default());
    (
        GameEnd {
            commands: command_tx,
            events: event_rx,
            signals: signals.clone(),
        },
        CommandSource {
            commands: command_rx,
            signals: signals.clone(),
        },
        EventSink {
            events: event_tx,
            signals,
            state: None,
        },
    )
}

/// The game's end of the bridge. Nothing here blocks.
pub(crate) struct GameEnd {
    commands: Sender<Command>,
    events: Receiver<NetEvent>,
    signals: Arc<Signals>,
}

impl GameEnd {
    /// Queues a command without waiting. Returns it back when the queue is full (or the
    /// network thread is gone).
    pub fn try_send(&self, command: Command) -> Result<(), Command> {
        match self.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(command) | TrySendError::Disconnected(command)) => Err(command),
        }
    }

    /// Wakes the network thread to read the queued commands.
    pub fn wake(&self) {
        self.signals.commands.notify_one();
    }

    /// The next event, if one is waiting.
    pub fn try_recv(&self) -> Option<NetEvent> {
        self.events.try_recv().ok()
    }

    /// Tells the network thread that events were taken, so that it stops waiting for room.
    pub fn drained(&self) {
        self.signals.room.notify_one();
    }
}

impl Drop for GameEnd {
    fn drop(&mut self) {
        // The thread notices at its next wake-up and closes the socket; never join here, a
        // login in progress could keep the main thread waiting.
        self.signals.closed.store(true, Ordering::Release);
        self.signals.commands.notify_one();
        self.signals.room.notify_one();
    }
}

/// The network thread's end of the commands.
pub(crate) struct CommandSource {
    commands: Receiver<Command>,
    signals: Arc<Signals>,
}

impl CommandSource {
    /// The next queued command, if any.
    pub fn try_recv(&self) -> Option<Command> {
        match self.commands.try_recv() {
            Ok(command) => Some(command),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.signals.closed.store(true, Ordering::Release);
                None
            }
        }
    }

    /// Waits until the game queues commands (or goes away). Cancel-safe.
    pub async fn queued(&self) {
        self.signals.commands.notified().await;
    }

    /// The game is gone: stop.
    pub fn closed(&self) -> bool {
        self.signals.closed.load(Ordering::Acquire)
    }
}

/// The network thread's end of the events, with the connection state last reported.
pub(crate) struct EventSink {
    events: Sender<NetEvent>,
    signals: Arc<Signals>,
    state: Option<ChatConnectionState>,
}

impl EventSink {
    /// Sends an event to the game, waiting for room while its queue is full. Returns false
    /// when the game is gone.
    pub async fn emit(&self, mut event: NetEvent) -> bool {
        loop {
            match self.events.try_send(event) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => {
                    self.signals.closed.store(true, Ordering::Release);
                    return false;
                }
                Err(TrySendError::Full(back)) => {
                    if self.signals.closed.load(Ordering::Acquire) {
                        return false;
                    }
                    event = back;
                    // The game drains every frame and then signals; a permit left from an
                    // earlier drain only costs one more try.
                    self.signals.room.notified().await;
                }
            }
        }
    }

    /// The state last reported to the game.
    pub fn state(&self) -> Option<ChatConnectionState> {
        self.state
    }

    /// Reports a new connection state (nothing when it is the current one).
    pub async fn set_state(&mut self, state: ChatConnectionState) {
        if self.state != Some(state) {
            self.state = Some(state);
            self.emit(NetEvent::State(state)).await;
        }
    }

    /// Reports an error.
    pub async fn error(
        &self,
        request: ChatRequest,
        target: Option<String>,
        code: ChatErrorCode,
        message: String,
    ) {
        self.emit(NetEvent::Error(ChatError {
            request,
            target,
            code,
            message,
        }))
        .await;
    }
}
