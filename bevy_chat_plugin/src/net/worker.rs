//! The network thread's main loop: log in, connect, run the session, back off, reconnect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use protocol::MessageId;
use tokio::sync::Notify;

use super::session::{self, SessionEnd};
use super::{Command, NetEvent};
use crate::auth::{self, Tokens};
use crate::config::{ChatLogin, ChatPlugin};
use crate::messages::{ChatDisconnected, ChatError, ChatErrorCode, ChatRequest};
use crate::state::ChatConnectionState;

/// Refresh the access token this long before it expires.
pub(super) const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A channel the player wants to be in, and how far it has read.
#[derive(Debug, Clone, Default)]
pub(super) struct ChannelTrack {
    /// Newest message id received (live or history): the resume point after a reconnect.
    pub last_id: Option<MessageId>,
    /// The server confirmed the join on the current connection.
    pub joined: bool,
    /// The server confirmed a join of this channel on some connection (a later join is a
    /// re-join).
    pub ever_joined: bool,
}

/// State of the network thread.
pub(crate) struct Worker {
    pub(super) config: ChatPlugin,
    pub(super) commands: Receiver<Command>,
    events: Sender<NetEvent>,
    pub(super) wake: Arc<Notify>,
    shutdown: Arc<AtomicBool>,
    pub(super) tokens: Option<Tokens>,
    want_connected: bool,
    /// The name to (re)apply on connect.
    pub(super) name: Option<String>,
    /// Channels to be in, kept across reconnects.
    pub(super) channels: BTreeMap<String, ChannelTrack>,
    ever_connected: bool,
    state: Option<ChatConnectionState>,
    /// The last connect refusal reported since the last session (each is reported once).
    last_refusal: Option<String>,
}

impl Worker {
    pub(super) fn new(
        config: ChatPlugin,
        commands: Receiver<Command>,
        events: Sender<NetEvent>,
        wake: Arc<Notify>,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        let tokens = match &config.login {
            ChatLogin::Token(token) => Some(Tokens::external(token.clone())),
            ChatLogin::Guest { .. } => None,
        };
        Self {
            want_connected: config.auto_connect,
            config,
            commands,
            events,
            wake,
            shutdown,
            tokens,
            name: None,
            channels: BTreeMap::new(),
            ever_connected: false,
            state: None,
            last_refusal: None,
        }
    }

    /// Thread entry point.
    pub(super) fn run_blocking(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                bevy::log::error!(%error, "chat: cannot start the network runtime");
                return;
            }
        };
        runtime.block_on(self.run());
    }

    pub(super) fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Sends an event to the game, waiting while its queue is full. Returns false when the
    /// game is gone.
    pub(super) async fn emit(&self, mut event: NetEvent) -> bool {
        loop {
            match self.events.try_send(event) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => {
                    self.shutdown.store(true, Ordering::Release);
                    return false;
                }
                Err(TrySendError::Full(back)) => {
                    if self.stopping() {
                        return false;
                    }
                    event = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }

    pub(super) async fn set_state(&mut self, state: ChatConnectionState) {
        if self.state != Some(state) {
            self.state = Some(state);
            self.emit(NetEvent::State(state)).await;
        }
    }

    pub(super) async fn error(
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

    async fn run(mut self) {
        let mut attempt = 0u32;
        while !self.stopping() {
            if !self.want_connected {
                self.set_state(ChatConnectionState::Disconnected).await;
                self.idle(None).await;
                continue;
            }
            if let Err(message) = self.ensure_tokens().await {
                self.error(ChatRequest::Login, None, ChatErrorCode::Login, message)
                    .await;
                self.back_off(&mut attempt).await;
                continue;
            }
            self.set_state(ChatConnectionState::Connecting).await;
            let end = session::run(&mut self).await;
            let was_up = matches!(end, SessionEnd::Dropped(_) | SessionEnd::Stopped);
            if matches!(end, SessionEnd::Dropped(_)) {
                attempt = 0;
            }
            // A refusal is reported as the server's error, not again as a connection error.
            let refused = matches!(end, SessionEnd::Refused(..));
            let (reason, retry) = match end {
                SessionEnd::Stopped => {
                    self.want_connected = false;
                    ("disconnected by the game".to_owned(), false)
                }
                SessionEnd::AuthRefused(reason) => {
                    // A fresh login fixes an expired guest token; a game-provided token needs
                    // a new one from the game.
                    let external = matches!(self.config.login, ChatLogin::Token(_));
                    self.tokens = None;
                    if external {
                        self.want_connected = false;
                    }
                    self.error(
                        ChatRequest::Connect,
                        None,
                        ChatErrorCode::Auth,
                        reason.clone(),
                    )
                    .await;
                    (reason, !external)
                }
                SessionEnd::Refused(code, reason) => {
                    // Reported once until it changes or a session succeeds; backing off (a ban
                    // may end, a connection slot may free up).
                    if self.last_refusal.as_ref() != Some(&reason) {
                        self.last_refusal = Some(reason.clone());
                        self.error(
                            ChatRequest::Connect,
                            None,
                            ChatErrorCode::Server(code),
                            reason.clone(),
                        )
                        .await;
                    }
                    (reason, true)
                }
                SessionEnd::Failed(reason) | SessionEnd::Dropped(reason) => (reason, true),
            };
            if was_up {
                self.emit(NetEvent::Disconnected(ChatDisconnected {
                    reason: reason.clone(),
                    will_reconnect: retry && self.want_connected,
                }))
                .await;
            } else if retry && attempt == 0 && !refused {
                // Reported once per outage, not once per attempt.
                self.error(
                    ChatRequest::Connect,
                    None,
                    ChatErrorCode::Connection,
                    reason,
                )
                .await;
            } else {
                bevy::log::debug!(%reason, attempt, "chat: connect attempt failed");
            }
            if retry && self.want_connected {
                self.back_off(&mut attempt).await;
            }
        }
    }

    /// Marks that a session was established (for `ChatConnected::reconnect`). Returns whether it
    /// is a reconnect.
    pub(super) fn mark_connected(&mut self) -> bool {
        self.last_refusal = None;
        std::mem::replace(&mut self.ever_connected, true)
    }

    /// Makes sure a usable access token is at hand: refresh it, or log in again.
    async fn ensure_tokens(&mut self) -> Result<(), String> {
        let usable = self
            .tokens
            .as_ref()
            .is_some_and(|t| !t.access_expiring(REFRESH_MARGIN));
        if usable {
            return Ok(());
        }
        let ChatLogin::Guest { .. } = self.config.login else {
            return match &self.tokens {
                Some(_) => Ok(()),
                None => Err("no token: hand the chat a new one with Chat::set_token".into()),
            };
        };
        self.set_state(ChatConnectionState::LoggingIn).await;
        let refresh_token = self
            .tokens
            .as_ref()
            .filter(|t| t.can_refresh())
            .and_then(|t| t.refresh.clone());
        let url = self.config.server_url.clone();
        let path = self.config.credentials_path();
        let timeout = self.config.connect_timeout;
        let result = tokio::task::spawn_blocking(move || {
            if let Some(token) = refresh_token {
                match auth::refresh(&url, &token, timeout) {
                    Ok(tokens) => return Ok(tokens),
                    Err(error) => {
                        bevy::log::info!(%error, "chat: refresh failed, logging in again")
                    }
                }
            }
            auth::login_guest(&url, path.as_deref(), timeout)
        })
        .await;
        match result {
            Ok(Ok(tokens)) => {
                if let Some(user_id) = tokens.user_id.clone() {
                    self.emit(NetEvent::LoggedIn { user_id }).await;
                }
                self.tokens = Some(tokens);
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(format!("login task failed: {error}")),
        }
    }

    async fn back_off(&mut self, attempt: &mut u32) {
        let delay = self.config.reconnect.delay(*attempt);
        *attempt = attempt.saturating_add(1);
        self.set_state(ChatConnectionState::Reconnecting).await;
        self.idle(Some(delay)).await;
    }

    /// Waits (for `limit`, or until asked to connect) while handling commands offline.
    async fn idle(&mut self, limit: Option<Duration>) {
        let deadline = limit.map(|d| tokio::time::Instant::now() + d);
        loop {
            while let Ok(command) = self.commands.try_recv() {
                let was_wanted = self.want_connected;
                self.offline_command(command).await;
                if self.want_connected && !was_wanted {
                    return;
                }
            }
            if self.stopping() || (limit.is_none() && self.want_connected) {
                return;
            }
            let notified = self.wake.notified();
            match deadline {
                Some(at) => {
                    if tokio::time::timeout_at(at, notified).await.is_err() {
                        return;
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Applies a command while not connected: remember what the next session must restore,
    /// refuse what needs a connection.
    async fn offline_command(&mut self, command: Command) {
        match command {
            Command::Connect => self.want_connected = true,
            Command::Disconnect => self.want_connected = false,
            Command::SetToken(token) => {
                self.tokens = Some(Tokens::external(token));
                self.want_connected = true;
            }
            Command::SetName(name) => self.name = Some(name),
            Command::Join(channel) => {
                self.channels.entry(channel).or_default();
            }
            Command::Leave(channel) => {
                if self.channels.remove(&channel).is_some() {
                    self.emit(NetEvent::Left(crate::messages::ChatLeft { channel }))
                        .await;
                }
            }
            other => {
                let request = other.request();
                self.error(
                    request,
                    other.target(),
                    ChatErrorCode::NotConnected,
                    "not connected to the chat server".into(),
                )
                .await;
            }
        }
    }
}
