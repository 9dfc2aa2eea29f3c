//! The WebSocket client of the harness: a real client with helpers to send requests and to
//! wait for (or rule out) frames.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use super::WAIT;

/// A real WebSocket client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The user id, when logged in through the harness.
    pub user_id: String,
}

/// What a client saw when waiting for the next frame.
#[derive(Debug)]
pub enum Seen {
    /// A text frame.
    Text(String),
    /// A close frame (with its code and reason, if any).
    Close(Option<(u16, String)>),
    /// The stream ended without a close frame.
    Ended,
}

impl Client {
    /// Connects to a WebSocket URL.
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(WAIT, connect_async_with_config(url, None, true))
            .await
            .expect("connect in time")
            .expect("websocket connects");
        Self {
            ws,
            user_id: String::new(),
        }
    }

    /// Wraps an already open WebSocket.
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            ws,
            user_id: String::new(),
        }
    }

    /// Connects with a tiny TCP receive buffer, so that a client that stops reading backs up
    /// into the server quickly (slow-consumer tests).
    pub async fn connect_small_buffer(addr: SocketAddr, token: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let url = format!("ws://{addr}/?auth_token={token}");
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("connect in time")
        .expect("websocket connects");
        Self {
            ws,
            user_id: String::new(),
        }
    }

    /// Connects by hand, writing `after_request` (raw frames) right behind the upgrade request
    /// in one write, so that the server holds client data before it has answered at all.
    pub async fn connect_pipelined(addr: SocketAddr, token: &str, after_request: &[u8]) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut bytes = format!(
            "GET /?auth_token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        bytes.extend_from_slice(after_request);
        tcp.write_all(&bytes).await.unwrap();
        // The response head, then whatever of the WebSocket stream came with it.
        let mut head = Vec::new();
        let body_start = loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
                .await
                .expect("the upgrade response in time")
                .unwrap();
            assert!(n > 0, "closed before the upgrade response");
            head.extend_from_slice(&chunk[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let ws = WebSocketStream::from_partially_read(
            MaybeTlsStream::Plain(tcp),
            head[body_start..].to_vec(),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        Self::from_stream(ws)
    }

    /// Sends a text frame as is.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Sends a JSON value.
    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends `{"type": kind, "payload": payload}`.
    pub async fn send_request(&mut self, kind: &str, payload: Value) {
        self.send(json!({ "type": kind, "payload": payload })).await;
    }

    /// Sends `{"type": kind, "payload": payload}`; false when the connection is gone (a test
    /// that kills the server on purpose).
    pub async fn try_send_request(&mut self, kind: &str, payload: Value) -> bool {
        let text = json!({ "type": kind, "payload": payload }).to_string();
        self.ws.send(Message::Text(text.into())).await.is_ok()
    }

    /// Sends every message without reading in between (a client that floods), then flushes.
    pub async fn send_all(&mut self, messages: impl IntoIterator<Item = Message>) {
        for message in messages {
            self.ws.feed(message).await.expect("send");
        }
        self.ws.flush().await.expect("flush");
    }

    /// Writes raw bytes to the TCP stream under the WebSocket (hand-made frames that break the
    /// protocol).
    pub async fn write_raw_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let MaybeTlsStream::Plain(tcp) = self.ws.get_mut() else {
            panic!("the harness only speaks plain TCP")
        };
        tcp.write_all(bytes).await.expect("write raw bytes");
    }

    /// After the server's close frame: sends this side's Close reply, then reads the TCP stream
    /// to its end. `Ok` for a clean end (FIN after the closing handshake), the error otherwise
    /// (a reset, which would have discarded whatever the server had not yet delivered).
    pub async fn finish_close(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncReadExt;
        // A reset shows here first when it came before this side wrote its reply.
        self.ws.flush().await.map_err(std::io::Error::other)?;
        let MaybeTlsStream::Plain(tcp) = self.ws.get_mut() else {
            panic!("the harness only speaks plain TCP")
        };
        let mut buf = [0u8; 4096];
        loop {
            let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
                .await
                .expect("the server ends the stream in time")?;
            if read == 0 {
                return Ok(());
            }
        }
    }

    /// Sends a raw WebSocket message.
    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame, close or end, skipping pings and pongs.
    pub async fn next_seen(&mut self) -> Seen {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame arrives in time");
            match next {
                Some(Ok(Message::Text(text))) => return Seen::Text(text.to_string()),
                Some(Ok(Message::Close(frame))) => {
                    return Seen::Close(
                        frame.map(|CloseFrame { code, reason }| {
                            (u16::from(code), reason.to_string())
                        }),
                    );
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("unexpected binary frame"),
                None | Some(Err(_)) => return Seen::Ended,
            }
        }
    }

    /// The next text frame, exactly.
    pub async fn recv_text(&mut self) -> String {
        match self.next_seen().await {
            Seen::Text(text) => text,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame as JSON.
    pub async fn recv(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Asserts the next frame is exactly `expected` (byte for byte).
    pub async fn expect_text(&mut self, expected: &str) {
        assert_eq!(self.recv_text().await, expected);
    }

    /// Asserts the next frame is this JSON value.
    pub async fn expect(&mut self, expected: Value) {
        assert_eq!(self.recv().await, expected);
    }

    /// The next frame whose `type` is `kind`, skipping others (e.g. presence events).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let value = self.recv().await;
            if value["type"] == kind {
                return value;
            }
        }
    }

    /// The next frame whose `type` is `kind`, waiting up to `wait` in all.
    pub async fn recv_type_within(&mut self, kind: &str, wait: Duration) -> Value {
        tokio::time::timeout(wait, async {
            loop {
                let next = self.ws.next().await;
                if let Some(Ok(Message::Text(text))) = next {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == kind {
                        return value;
                    }
                } else if !matches!(next, Some(Ok(_))) {
                    panic!("connection ended while waiting for {kind}");
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {kind} within {wait:?}"))
    }

    /// The next reply or error, skipping typed events (presence and the like).
    pub async fn recv_type_or_error(&mut self) -> Value {
        loop {
            let value = self.recv().await;
            if value.get("type").is_none() {
                return value;
            }
        }
    }

    /// The next text frame, close or end, or `None` when nothing arrives within `wait` (pings
    /// and pongs skipped).
    pub async fn seen_within(&mut self, wait: Duration) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            return Some(match next {
                Some(Ok(Message::Text(text))) => Seen::Text(text.to_string()),
                Some(Ok(Message::Close(frame))) => Seen::Close(
                    frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string())),
                ),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("unexpected binary frame"),
                None | Some(Err(_)) => Seen::Ended,
            });
        }
    }

    /// The next text frame as JSON, or `None` when nothing arrives within `wait` (pings and
    /// pongs skipped). Panics when the connection ends.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        match self.seen_within(wait).await? {
            Seen::Text(text) => Some(
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
            ),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads on to the close: every text frame as JSON, and the close code and reason (`None`
    /// when the stream ended without a close frame, e.g. on a reset).
    pub async fn read_to_close(&mut self) -> (Vec<Value>, Option<(u16, String)>) {
        let mut texts = Vec::new();
        loop {
            match self.next_seen().await {
                Seen::Text(text) => texts.push(serde_json::from_str(&text).unwrap()),
                Seen::Close(frame) => return (texts, frame),
                Seen::Ended => return (texts, None),
            }
        }
    }

    /// Asserts that the server closes the connection, returning the close code and reason.
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next_seen().await {
                Seen::Text(_) => continue,
                Seen::Close(frame) => return frame,
                Seen::Ended => return None,
            }
        }
    }

    /// Asserts that nothing arrives for `quiet` (used only after an event proved the server
    /// already handled everything that could have produced a frame).
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, self.ws.next()).await
            && !matches!(message, Message::Ping(_) | Message::Pong(_))
        {
            panic!("expected silence, got {message:?}");
        }
    }

    /// Sets the name and checks the reply.
    pub async fn set_name(&mut self, name: &str) {
        self.send_request("set-name", json!({ "username": name }))
            .await;
        let reply = self.recv_type_or_error().await;
        assert_eq!(
            reply,
            json!({ "message": format!("Username set to {name}") })
        );
    }

    /// Joins a channel and checks the reply.
    pub async fn join(&mut self, channel: &str) {
        self.send_request("join", json!({ "channel": channel }))
            .await;
        let reply = self.recv_type_or_error().await;
        assert_eq!(
            reply,
            json!({ "message": format!("You have joined {channel}") })
        );
    }

    /// Sends a ping and waits for the pong: every frame sent before it has been handled.
    pub async fn sync(&mut self) {
        self.send(json!({"type": "ping", "ref": "sync"})).await;
        loop {
            let value = self.recv().await;
            if value == json!({"type": "pong", "ref": "sync"}) {
                return;
            }
        }
    }
}
