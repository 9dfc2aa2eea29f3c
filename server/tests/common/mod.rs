//! Test harness: a real server on an ephemeral port and real WebSocket clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::LoginResponse;
use serde_json::{Value, json};
use server::config::Config;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

/// How long any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// The RSA key committed for tests (generating one per server would slow every test down).
pub fn fixture_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-key.pem")
}

/// A second key, for "foreign token" tests.
pub fn other_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/other-key.pem")
}

/// A server running in this test process.
pub struct TestServer {
    /// Bound address.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server::ServerError>>>,
    /// Holds the guest file and any key file created by the test.
    pub dir: tempfile::TempDir,
}

/// Test defaults: ephemeral port, the fixture key, a private guest file.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.identity.key_file = dir.join("key.pem");
    std::fs::copy(fixture_key(), &config.identity.key_file).unwrap();
    config.identity.guest_file = dir.join("guests.jsonl");
    config.shutdown_grace = Duration::from_secs(2);
    config
}

impl TestServer {
    /// A server with test defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with test defaults changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        configure(&mut config);
        Self::start_config(config, dir).await
    }

    /// A server with exactly this configuration.
    pub async fn start_config(config: Config, dir: tempfile::TempDir) -> Self {
        let server = server::Server::bind(config).await.expect("server binds");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
            dir,
        }
    }

    /// `http://addr`
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://addr/?auth_token=token`
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/?auth_token={}", self.addr, token)
    }

    /// GET on this server: (status, body).
    pub async fn get(&self, path_and_query: &str) -> (u16, String) {
        http_get(format!("{}{}", self.http(), path_and_query)).await
    }

    /// POST JSON with optional bearer token: (status, body).
    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, String) {
        let url = format!("{}{}", self.http(), path);
        let bearer = bearer.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let agent = agent();
            let mut request = agent.post(&url);
            if let Some(token) = bearer {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            let mut response = request.send_json(body).expect("http post");
            let status = response.status().as_u16();
            (
                status,
                response.body_mut().read_to_string().unwrap_or_default(),
            )
        })
        .await
        .unwrap()
    }

    /// A new guest.
    pub async fn login(&self) -> LoginResponse {
        let (status, body) = self.get("/login-as-guest").await;
        assert_eq!(status, 200, "login failed: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A connected client of a new guest (the welcome already read).
    pub async fn guest(&self) -> Client {
        let login = self.login().await;
        let mut client = self.connect(&login.auth_token).await;
        client.user_id = login.user_id;
        client
            .expect_text(r#"{"message":"Successfully connected!"}"#)
            .await;
        client
    }

    /// A connected client of a new guest with a name set (the reply read).
    pub async fn named(&self, name: &str) -> Client {
        let mut client = self.guest().await;
        client.set_name(name).await;
        client
    }

    /// A raw connection with `token` (nothing read yet).
    pub async fn connect(&self, token: &str) -> Client {
        Client::connect(&self.ws_url(token)).await
    }

    /// Stops the server (as on SIGTERM) and waits for it to finish.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    async fn stop_in_place(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops in time")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A ureq agent that returns non-2xx responses instead of failing.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into()
}

/// GET any URL: (status, body).
pub async fn http_get(url: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut response = agent().get(&url).call().expect("http get");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    })
    .await
    .unwrap()
}

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

    /// The next reply or error, skipping typed events (presence and the like).
    pub async fn recv_type_or_error(&mut self) -> Value {
        loop {
            let value = self.recv().await;
            if value.get("type").is_none() {
                return value;
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
pub mod tokens;
