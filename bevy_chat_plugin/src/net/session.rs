//! One WebSocket session: connect, restore name and channels (resuming with `since`), then
//! relay commands and frames until the connection ends.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::{
    ClientFrame, ClientRequest, ErrorCode, Event, MessageId, Ref, ServerFrame, parse_server_frame,
};
use tokio::time::{Instant, interval};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::bridge::{Command, NetEvent};
use super::link::{SessionEnd, SessionLink};
use crate::auth::{self, REFRESH_MARGIN, Tokens};
use crate::messages::*;
use crate::state::ChatConnectionState;

mod events;

/// How often the client pings, and after how many silent intervals it gives up on the server.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_MISSES: u32 = 3;

/// Shortest time between two `typing` announcements for one channel. The server passes one per
/// `--typing-interval` (2 s by default) and drops the rest; a little more than that here means
/// none is sent only to be dropped, and receivers show a typist for 4 s after the last one.
const TYPING_RESEND: Duration = Duration::from_millis(2_500);

/// A request in flight, by `ref`.
#[derive(Debug, Clone)]
enum Pending {
    /// A name; `previous` is put back when the server refuses it.
    SetName {
        name: String,
        previous: Option<String>,
    },
    /// A page of older messages asked for by the game.
    History,
    Join {
        channel: String,
        rejoin: bool,
    },
    Leave(String),
    /// A `typing` announcement: silent on success, so its entry is replaced by the channel's
    /// next one (or dropped with a message there) rather than answered.
    Typing(String),
    Other(ChatRequest, Option<String>),
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Session<'a> {
    link: SessionLink<'a>,
    socket: Socket,
    pending: HashMap<u64, Pending>,
    next_ref: u64,
    /// Per channel: the `ref` and time of the last `typing` sent.
    typing_sent: HashMap<String, (u64, Instant)>,
}

/// Connects and serves one session.
pub(super) async fn run(link: SessionLink<'_>) -> SessionEnd {
    let Some(tokens) = link.restore.tokens.clone() else {
        return SessionEnd::AuthRefused("no token".into());
    };
    let url = link.config.websocket_url(&tokens.access);
    let timeout = link.config.connect_timeout;
    let connecting = tokio_tungstenite::connect_async_with_config(url, None, true);
    let mut socket = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(error)) => return SessionEnd::Failed(format!("cannot connect: {error}")),
        Err(_) => return SessionEnd::Failed("connecting timed out".into()),
    };
    // The first frame says whether the token was accepted.
    match tokio::time::timeout(timeout, socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => match parse_server_frame(&text) {
            Ok(ServerFrame::Reply { .. }) => {}
            Ok(ServerFrame::Error { error, code, .. }) => {
                return match code {
                    // The token is fine: the user or address may not connect right now.
                    ErrorCode::TooManyConnections | ErrorCode::Forbidden => {
                        SessionEnd::Refused(code, error)
                    }
                    // Auth errors, and servers that send no code (the seed's): log in again.
                    _ => SessionEnd::AuthRefused(error),
                };
            }
            _ => return SessionEnd::Failed(format!("unexpected welcome: {text}")),
        },
        Ok(Some(Ok(Message::Close(frame)))) => return SessionEnd::Failed(close_text(frame)),
        Ok(_) => return SessionEnd::Failed("the server closed the connection".into()),
        Err(_) => return SessionEnd::Failed("no welcome from the server".into()),
    }
    let reconnect = link.reconnect;
    let mut session = Session {
        link,
        socket,
        pending: HashMap::new(),
        next_ref: 1,
        typing_sent: HashMap::new(),
    };
    let end = session.serve(tokens, reconnect).await;
    let _ = session.socket.close(None).await;
    session.link.restore.connection_ended();
    end
}

fn close_text(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(frame) => format!(
            "closed by the server ({}): {}",
            u16::from(frame.code),
            frame.reason
        ),
        None => "closed by the server".into(),
    }
}

impl Session<'_> {
    async fn serve(&mut self, tokens: Tokens, reconnect: bool) -> SessionEnd {
        let user_id = tokens.user_id.clone().unwrap_or_default();
        self.link
            .sink
            .set_state(ChatConnectionState::Connected)
            .await;
        self.link
            .sink
            .emit(NetEvent::Connected(ChatConnected { user_id, reconnect }))
            .await;
        if let Err(end) = self.restore().await {
            return end;
        }
        let mut keepalive = interval(KEEPALIVE);
        keepalive.tick().await;
        let mut last_heard = Instant::now();
        let refresh_at = tokens
            .access_expires
            .map(|at| Instant::from_std(at.checked_sub(REFRESH_MARGIN).unwrap_or(at)));
        let mut refresh_at = refresh_at.filter(|_| tokens.can_refresh());
        loop {
            if self.link.commands.closed() {
                return SessionEnd::Stopped;
            }
            let refresh_due = async {
                match refresh_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = self.socket.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => self.on_frame(&text).await,
                        Some(Ok(Message::Close(frame))) => return SessionEnd::Dropped(close_text(frame)),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return SessionEnd::Dropped(format!("connection lost: {error}")),
                        None => return SessionEnd::Dropped("connection lost".into()),
                    }
                }
                () = self.link.commands.queued() => {
                    if let Err(end) = self.drain_commands().await {
                        return end;
                    }
                }
                _ = keepalive.tick() => {
                    if last_heard.elapsed() > KEEPALIVE * KEEPALIVE_MISSES {
                        return SessionEnd::Dropped("the server stopped answering".into());
                    }
                    if let Err(end) = self.write(Message::Ping(Default::default())).await {
                        return end;
                    }
                }
                () = refresh_due => {
                    refresh_at = None;
                    self.refresh_tokens().await;
                }
            }
        }
    }

    /// Refreshes the access token in the background of a live session, so that a later
    /// reconnect does not wait for a login.
    async fn refresh_tokens(&mut self) {
        let Some(token) = self
            .link
            .restore
            .tokens
            .as_ref()
            .and_then(|t| t.refresh.clone())
        else {
            return;
        };
        let url = self.link.config.server_url.clone();
        let timeout = self.link.config.connect_timeout;
        match tokio::task::spawn_blocking(move || auth::refresh(&url, &token, timeout)).await {
            Ok(Ok(tokens)) => self.link.restore.tokens = Some(tokens),
            Ok(Err(error)) => {
                bevy::log::info!(%error, "chat: token refresh failed; will log in on reconnect")
            }
            Err(error) => bevy::log::warn!(%error, "chat: token refresh task failed"),
        }
    }

    /// Re-applies the name and re-joins every channel, resuming after the last message seen.
    async fn restore(&mut self) -> Result<(), SessionEnd> {
        if let Some(name) = self.link.restore.name.clone() {
            self.request(
                ClientRequest::SetName {
                    username: name.clone(),
                },
                // Refused on restore: forget it rather than re-send it on every reconnect.
                Pending::SetName {
                    name,
                    previous: None,
                },
            )
            .await?;
        }
        let channels: Vec<(String, Option<MessageId>)> = self
            .link
            .restore
            .channels
            .iter()
            .map(|(channel, track)| (channel.clone(), track.last_id))
            .collect();
        for (channel, since) in channels {
            let rejoin = self
                .link
                .restore
                .channels
                .get(&channel)
                .is_some_and(|t| t.ever_joined);
            self.join(channel, since, rejoin).await?;
        }
        // The server keeps the block list: read it, so the game knows it after every connect.
        self.request(
            ClientRequest::Blocked,
            Pending::Other(ChatRequest::Blocked, None),
        )
        .await?;
        // Commands sent while connecting.
        self.drain_commands().await
    }

    async fn join(
        &mut self,
        channel: String,
        since: Option<MessageId>,
        rejoin: bool,
    ) -> Result<(), SessionEnd> {
        let history = match since {
            Some(_) => None,
            None => Some(self.link.config.history_on_join).filter(|h| *h > 0),
        };
        self.request(
            ClientRequest::Join {
                channel: channel.clone(),
                history,
                since,
            },
            Pending::Join { channel, rejoin },
        )
        .await
    }

    async fn drain_commands(&mut self) -> Result<(), SessionEnd> {
        while let Some(command) = self.link.commands.try_recv() {
            self.command(command).await?;
        }
        Ok(())
    }

    async fn command(&mut self, command: Command) -> Result<(), SessionEnd> {
        let request = command.request();
        let target = command.target();
        let other = Pending::Other(request, target);
        match command {
            Command::Connect => Ok(()),
            Command::Disconnect => Err(SessionEnd::Stopped),
            Command::SetToken(token) => {
                // Used from the next connect on.
                self.link.restore.tokens = Some(Tokens::external(token));
                Ok(())
            }
            Command::SetName(username) => {
                let previous = self.link.restore.name.replace(username.clone());
                self.request(
                    ClientRequest::SetName {
                        username: username.clone(),
                    },
                    Pending::SetName {
                        name: username,
                        previous,
                    },
                )
                .await
            }
            Command::Join(channel) => {
                let joining = self
                    .pending
                    .values()
                    .any(|p| matches!(p, Pending::Join { channel: c, .. } if *c == channel));
                if joining
                    || self
                        .link
                        .restore
                        .channels
                        .get(&channel)
                        .is_some_and(|t| t.joined)
                {
                    return Ok(());
                }
                let since = self
                    .link
                    .restore
                    .channels
                    .entry(channel.clone())
                    .or_default()
                    .last_id;
                self.join(channel, since, false).await
            }
            Command::Leave(channel) => {
                self.link.restore.channels.remove(&channel);
                if let Some((reference, _)) = self.typing_sent.remove(&channel) {
                    self.pending.remove(&reference);
                }
                self.request(
                    ClientRequest::Leave {
                        channel: channel.clone(),
                    },
                    Pending::Leave(channel),
                )
                .await
            }
            Command::Send { channel, text } => {
                // The server opens the typing window again with a message; so does this.
                if let Some((reference, _)) = self.typing_sent.remove(&channel) {
                    self.pending.remove(&reference);
                }
                self.request(
                    ClientRequest::Message {
                        channel,
                        message: text,
                    },
                    other,
                )
                .await
            }
            Command::Direct { to, text } => {
                self.request(ClientRequest::Direct { to, message: text }, other)
                    .await
            }
            Command::Who(channel) => self.request(ClientRequest::Who { channel }, other).await,
            Command::Typing(channel) => self.typing(channel).await,
            Command::Block(user_id) => self.request(ClientRequest::Block { user_id }, other).await,
            Command::Unblock(user_id) => {
                self.request(ClientRequest::Unblock { user_id }, other)
                    .await
            }
            Command::Blocked => self.request(ClientRequest::Blocked, other).await,
            Command::History {
                channel,
                before,
                limit,
            } => {
                let other = Pending::History;
                self.request(
                    ClientRequest::History {
                        channel,
                        before,
                        limit: Some(limit),
                    },
                    other,
                )
                .await
            }
        }
    }

    /// Announces typing in a joined channel, at most once per [`TYPING_RESEND`].
    async fn typing(&mut self, channel: String) -> Result<(), SessionEnd> {
        let joined = self
            .link
            .restore
            .channels
            .get(&channel)
            .is_some_and(|t| t.joined);
        if !joined {
            return Ok(());
        }
        if let Some((reference, sent)) = self.typing_sent.get(&channel) {
            if sent.elapsed() < TYPING_RESEND {
                return Ok(());
            }
            self.pending.remove(reference);
        }
        let reference = self.next_ref;
        self.typing_sent
            .insert(channel.clone(), (reference, Instant::now()));
        self.request(
            ClientRequest::Typing {
                channel: channel.clone(),
            },
            Pending::Typing(channel),
        )
        .await
    }

    async fn request(
        &mut self,
        request: ClientRequest,
        pending: Pending,
    ) -> Result<(), SessionEnd> {
        let reference = self.next_ref;
        self.next_ref += 1;
        self.pending.insert(reference, pending);
        let frame = ClientFrame::with_ref(request, reference);
        self.write(Message::Text(frame.to_json().into())).await
    }

    async fn write(&mut self, message: Message) -> Result<(), SessionEnd> {
        let timeout = self.link.config.connect_timeout;
        match tokio::time::timeout(timeout, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(SessionEnd::Dropped(format!("connection lost: {error}"))),
            Err(_) => Err(SessionEnd::Dropped("the server stopped reading".into())),
        }
    }

    fn take_pending(&mut self, reference: Option<&Ref>) -> Option<Pending> {
        let id = match reference? {
            Ref::Number(n) => n.as_u64()?,
            Ref::Text(_) => return None,
        };
        self.pending.remove(&id)
    }

    async fn on_frame(&mut self, text: &str) {
        let frame = match parse_server_frame(text) {
            Ok(frame) => frame,
            Err(error) => {
                bevy::log::warn!(%error, "chat: ignoring a frame this client does not understand");
                return;
            }
        };
        match frame {
            ServerFrame::Reply { reference, .. } => match self.take_pending(reference.as_ref()) {
                Some(Pending::SetName { name, .. }) => {
                    self.link
                        .sink
                        .emit(NetEvent::NameSet(NameSet { username: name }))
                        .await;
                }
                Some(Pending::Join { channel, rejoin }) => {
                    if let Some(track) = self.link.restore.channels.get_mut(&channel) {
                        track.joined = true;
                        track.ever_joined = true;
                        self.link
                            .sink
                            .emit(NetEvent::Joined(ChatJoined {
                                channel,
                                rejoined: rejoin,
                            }))
                            .await;
                    }
                }
                Some(Pending::Leave(channel)) => {
                    self.link
                        .sink
                        .emit(NetEvent::Left(ChatLeft { channel }))
                        .await;
                }
                Some(Pending::Other(..) | Pending::History | Pending::Typing(_)) | None => {}
            },
            ServerFrame::Error {
                error,
                code,
                reference,
            } => {
                let pending = self.take_pending(reference.as_ref());
                let (request, target) = match pending {
                    Some(Pending::SetName { name, previous }) => {
                        if self.link.restore.name.as_deref() == Some(name.as_str()) {
                            self.link.restore.name = previous;
                        }
                        (ChatRequest::SetName, Some(name))
                    }
                    Some(Pending::History) => (ChatRequest::History, None),
                    Some(Pending::Join { channel, .. }) => {
                        self.link.restore.channels.remove(&channel);
                        (ChatRequest::Join, Some(channel))
                    }
                    Some(Pending::Leave(channel)) => (ChatRequest::Leave, Some(channel)),
                    Some(Pending::Typing(channel)) => (ChatRequest::Typing, Some(channel)),
                    Some(Pending::Other(request, target)) => (request, target),
                    None => (ChatRequest::Unknown, None),
                };
                self.link
                    .sink
                    .error(request, target, ChatErrorCode::Server(code), error)
                    .await;
            }
            ServerFrame::Event { event, reference } => {
                // Replies to our requests carry a ref; forget it so the map stays small.
                match (self.take_pending(reference.as_ref()), event) {
                    (Some(Pending::History), Event::History(page)) => {
                        self.on_older_page(page).await
                    }
                    (_, event) => self.on_event(event).await,
                }
            }
        }
    }
}
