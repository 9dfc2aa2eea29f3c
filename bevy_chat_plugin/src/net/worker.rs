//! The network thread's main loop: log in, connect, run a session, back off, reconnect; and
//! the connection state it reports (see [`ChatConnectionState`] for the state machine).

use std::time::Duration;

use super::bridge::{Command, CommandSource, EventSink, NetEvent};
use super::failures::{FailureKind, FailureLog};
use super::link::{SessionEnd, SessionLink};
use super::restore::Restore;
use super::session;
use crate::auth::{self, REFRESH_MARGIN, Tokens};
use crate::config::{ChatLogin, ChatPlugin};
use crate::messages::{ChatDisconnected, ChatErrorCode, ChatLeft, ChatRequest};
use crate::state::ChatConnectionState;

/// State of the network thread.
pub(super) struct Worker {
    config: ChatPlugin,
    commands: CommandSource,
    sink: EventSink,
    restore: Restore,
    want_connected: bool,
    /// A session was established before (the next one is a reconnect).
    ever_connected: bool,
    /// The last connect refusal reported since the last session (each is reported once).
    last_refusal: Option<String>,
    failures: FailureLog,
}

impl Worker {
    pub(super) fn new(config: ChatPlugin, commands: CommandSource, sink: EventSink) -> Self {
        let tokens = match &config.login {
            ChatLogin::Token(token) => Some(Tokens::external(token.clone())),
            ChatLogin::Guest { .. } => None,
        };
        Self {
            want_connected: config.auto_connect,
            failures: FailureLog::new(config.log_failures, &config.server_url),
            config,
            commands,
            sink,
            restore: Restore {
                tokens,
                ..Restore::default()
            },
            ever_connected: false,
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

    fn stopping(&self) -> bool {
        self.commands.closed()
    }

    /// Reports a step of an attempt (logging in, connecting). While reconnecting the state
    /// stays `Reconnecting` until an attempt succeeds: the attempts do not flip it.
    async fn attempting(&mut self, step: ChatConnectionState) {
        if self.sink.state() != Some(ChatConnectionState::Reconnecting) {
            self.sink.set_state(step).await;
        }
    }

    async fn error(&self, request: ChatRequest, code: ChatErrorCode, message: String) {
        self.sink.error(request, None, code, message).await;
    }

    async fn run(mut self) {
        let mut attempt = 0u32;
        while !self.stopping() {
            if !self.want_connected {
                self.sink.set_state(ChatConnectionState::Disconnected).await;
                self.idle(None).await;
                continue;
            }
            if let Err(message) = self.ensure_tokens().await {
                self.failures.failed(FailureKind::Login, &message);
                self.error(ChatRequest::Login, ChatErrorCode::Login, message)
                    .await;
                self.back_off(&mut attempt).await;
                continue;
            }
            self.attempting(ChatConnectionState::Connecting).await;
            let end = session::run(SessionLink {
                config: &self.config,
                commands: &self.commands,
                sink: &mut self.sink,
                restore: &mut self.restore,
                reconnect: self.ever_connected,
            })
            .await;
            let was_up = matches!(end, SessionEnd::Dropped(_) | SessionEnd::Stopped);
            if was_up {
                self.ever_connected = true;
                self.last_refusal = None;
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
                    self.restore.tokens = None;
                    if external {
                        self.want_connected = false;
                    }
                    self.failures.failed(FailureKind::Auth, &reason);
                    self.error(ChatRequest::Connect, ChatErrorCode::Auth, reason.clone())
                        .await;
                    (reason, !external)
                }
                SessionEnd::Refused(code, reason) => {
                    self.failures.failed(FailureKind::Refused, &reason);
                    // Reported once until it changes or a session succeeds; backing off (a ban
                    // may end, a connection slot may free up).
                    if self.last_refusal.as_ref() != Some(&reason) {
                        self.last_refusal = Some(reason.clone());
                        self.error(
                            ChatRequest::Connect,
                            ChatErrorCode::Server(code),
                            reason.clone(),
                        )
                        .await;
                    }
                    (reason, true)
                }
                SessionEnd::Failed(reason) => {
                    self.failures.failed(FailureKind::Connect, &reason);
                    (reason, true)
                }
                SessionEnd::Dropped(reason) => {
                    self.failures.failed(FailureKind::Lost, &reason);
                    (reason, true)
                }
            };
            if was_up {
                self.sink
                    .emit(NetEvent::Disconnected(ChatDisconnected {
                        reason: reason.clone(),
                        will_reconnect: retry && self.want_connected,
                    }))
                    .await;
            } else if retry && attempt == 0 && !refused {
                // Reported once per outage, not once per attempt.
                self.error(ChatRequest::Connect, ChatErrorCode::Connection, reason)
                    .await;
            } else {
                bevy::log::debug!(%reason, attempt, "chat: connect attempt failed");
            }
            if retry && self.want_connected {
                self.back_off(&mut attempt).await;
            }
        }
    }

    /// Makes sure a usable access token is at hand: refresh it, or log in again.
    async fn ensure_tokens(&mut self) -> Result<(), String> {
        let usable = self
            .restore
            .tokens
            .as_ref()
            .is_some_and(|t| !t.access_expiring(REFRESH_MARGIN));
        if usable {
            return Ok(());
        }
        let ChatLogin::Guest { .. } = self.config.login else {
            return match &self.restore.tokens {
                Some(_) => Ok(()),
                None => Err("no token: hand the chat a new one with Chat::set_token".into()),
            };
        };
        self.attempting(ChatConnectionState::LoggingIn).await;
        let refresh_token = self
            .restore
            .tokens
            .as_ref()
            .filter(|t| t.can_refresh())
            .and_then(|t| t.refresh.clone());
        let url = self.config.server_url.clone();
        let path = self.config.credentials_path();
        let legacy = self.config.legacy_credentials_path();
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
            auth::login_guest(&url, path.as_deref(), legacy.as_deref(), timeout)
        })
        .await;
        match result {
            Ok(Ok(tokens)) => {
                if let Some(user_id) = tokens.user_id.clone() {
                    self.sink.emit(NetEvent::LoggedIn { user_id }).await;
                }
                self.restore.tokens = Some(tokens);
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(format!("login task failed: {error}")),
        }
    }

    async fn back_off(&mut self, attempt: &mut u32) {
        let delay = self.config.reconnect.delay(*attempt);
        *attempt = attempt.saturating_add(1);
        self.sink.set_state(ChatConnectionState::Reconnecting).await;
        self.idle(Some(delay)).await;
    }

    /// Waits (for `limit`, or until asked to connect) while handling commands offline.
    async fn idle(&mut self, limit: Option<Duration>) {
        let deadline = limit.map(|d| tokio::time::Instant::now() + d);
        loop {
            while let Some(command) = self.commands.try_recv() {
                let was_wanted = self.want_connected;
                self.offline_command(command).await;
                if self.want_connected && !was_wanted {
                    return;
                }
            }
            // Offline: until asked to connect. Backing off: until the delay ends, or at once
            // when the game disconnects (so the state says so now, not after the delay).
            let done = match limit {
                None => self.want_connected,
                Some(_) => !self.want_connected,
            };
            if self.stopping() || done {
                return;
            }
            let queued = self.commands.queued();
            match deadline {
                Some(at) => {
                    if tokio::time::timeout_at(at, queued).await.is_err() {
                        return;
                    }
                }
                None => queued.await,
            }
        }
    }

    /// Applies a command while not connected: remember what the next session must restore,
    /// refuse what needs a connection.
    async fn offline_command(&mut self, command: Command) {
        match command {
            Command::Connect => self.want_connected = true,
            // Nobody to tell: typing is only news while connected.
            Command::Typing(_) => {}
            Command::Disconnect => self.want_connected = false,
            Command::SetToken(token) => {
                self.restore.tokens = Some(Tokens::external(token));
                self.want_connected = true;
            }
            Command::SetName(name) => self.restore.name = Some(name),
            Command::Join(channel) => {
                self.restore.channels.entry(channel).or_default();
            }
            Command::Leave(channel) => {
                if self.restore.channels.remove(&channel).is_some() {
                    self.sink.emit(NetEvent::Left(ChatLeft { channel })).await;
                }
            }
            other => {
                self.sink
                    .error(
                        other.request(),
                        other.target(),
                        ChatErrorCode::NotConnected,
                        "not connected to the chat server".into(),
                    )
                    .await;
            }
        }
    }
}
