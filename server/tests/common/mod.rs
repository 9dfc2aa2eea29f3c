//! Test harness: a real server on an ephemeral port and real WebSocket clients.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::LoginResponse;
use serde_json::{Value, json};
use server::config::{Config, EngineKind};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

/// How long any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

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
    /// The configuration it was started with (`listen` as given, e.g. port 0).
    pub config: Config,
    /// Issuer of its tokens: the public URL, else `http://addr`.
    pub issuer: String,
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
    /// A server with test defaults, on the engine of the running test ([`TestEngine::current`]).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with test defaults changed by `configure`, on the engine of the running test
    /// ([`TestEngine::current`]; `configure` may still change the engine settings).
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(&TestEngine::current(), configure).await
    }

    /// A server with test defaults on `engine`, changed by `configure`.
    pub async fn start_on(engine: &TestEngine, configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        engine.apply(&mut config);
        configure(&mut config);
        Self::start_config(config, dir).await
    }

    /// Another node of this server's cluster: the same configuration (engine, Redis URL and
    /// prefix, limits, admin token, ...), the same signing key and the same public URL, so each
    /// node accepts the other's tokens; then changed by `configure`. It has its own port and
    /// directory. Only Redis nodes share state: memory nodes would be strangers.
    pub async fn start_node(&self, configure: impl FnOnce(&mut Config)) -> Self {
        assert_eq!(
            self.config.engine.selected(),
            EngineKind::Redis,
            "start_node makes a cluster, which needs the Redis engine"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.identity.key_file = dir.path().join("key.pem");
        std::fs::copy(&self.config.identity.key_file, &config.identity.key_file)
            .expect("copy the first node's key file");
        config.identity.guest_file = dir.path().join("guests.jsonl");
        config.identity.public_url = Some(self.issuer.clone());
        configure(&mut config);
        Self::start_config(config, dir).await
    }

    /// A server with exactly this configuration.
    pub async fn start_config(config: Config, dir: tempfile::TempDir) -> Self {
        let server = server::Server::bind(config.clone())
            .await
            .expect("server binds");
        let addr = server.local_addr();
        let issuer = config.identity.public_url.as_deref().map_or_else(
            || format!("http://{addr}"),
            |url| url.trim_end_matches('/').to_owned(),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            config,
            issuer,
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
        // A Redis test waits for its servers to finish (they still write to Redis while their
        // connections close) before it deletes its keys.
        if let Some(task) = self.task.take() {
            let _ = STOPPING.try_with(|stopping| stopping.lock().unwrap().push(task));
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

// ---------------------------------------------------------------------------------------------
// Engines: every protocol test runs once on the memory engine and once on Redis.

/// The engine the servers of a test run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestEngine {
    /// The in-process engine (the default).
    Memory,
    /// Redis at [`redis_url`], every key and channel under `prefix` (unique per test, so tests
    /// sharing one Redis never see each other).
    Redis {
        /// Key and channel prefix, e.g. `test-<uuid>:`.
        prefix: String,
    },
}

tokio::task_local! {
    /// The engine of the test running in this task (set by [`per_engine!`]).
    pub static TEST_ENGINE: TestEngine;
}

impl TestEngine {
    /// The engine of the running test: the task-local one, else memory.
    pub fn current() -> Self {
        TEST_ENGINE
            .try_with(Clone::clone)
            .unwrap_or(TestEngine::Memory)
    }

    /// Redis under a new unique prefix.
    pub fn fresh_redis() -> Self {
        TestEngine::Redis {
            prefix: format!("test-{}:", uuid::Uuid::new_v4()),
        }
    }

    /// The Redis prefix (none for memory).
    pub fn prefix(&self) -> Option<&str> {
        match self {
            TestEngine::Memory => None,
            TestEngine::Redis { prefix } => Some(prefix),
        }
    }

    /// Points `config` at this engine.
    pub fn apply(&self, config: &mut Config) {
        match self {
            TestEngine::Memory => {
                config.engine.kind = Some(EngineKind::Memory);
                config.engine.redis_url = None;
            }
            TestEngine::Redis { prefix } => {
                let url = redis_url().unwrap_or_else(|why| panic!("{why}"));
                config.engine.kind = Some(EngineKind::Redis);
                config.engine.redis_url = Some(url);
                config.engine.redis_prefix = prefix.clone();
            }
        }
    }
}

/// Generates, for each named `async fn` (no arguments, at the top level of the test file, with
/// no test attribute of its own), two tests: `memory::name` and `redis::name`. Each runs the fn
/// with [`TEST_ENGINE`] set, so every [`TestServer::start`] in it uses that engine; the Redis
/// one gets a fresh key prefix. Without a Redis the Redis variants skip, or fail under `CI=true`
/// (see [`redis_url`]).
#[macro_export]
macro_rules! per_engine {
    ($($test:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $crate::common::run_memory(super::$test()).await;
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $crate::common::run_redis(
                        concat!("redis::", stringify!($test)),
                        super::$test(),
                    )
                    .await;
                }
            )+
        }
    };
}

/// Generates, for each named `async fn` (no arguments, no test attribute), the test
/// `redis::name`: as the Redis half of [`per_engine!`], for tests that only make sense on Redis.
#[macro_export]
macro_rules! redis_only {
    ($($test:ident),+ $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $crate::common::run_redis(
                        concat!("redis::", stringify!($test)),
                        super::$test(),
                    )
                    .await;
                }
            )+
        }
    };
}

/// Runs a test body on the memory engine.
pub async fn run_memory(test: impl Future<Output = ()>) {
    TEST_ENGINE.scope(TestEngine::Memory, test).await;
}

/// Runs a test body on Redis under a fresh prefix, then deletes that prefix's keys. Skips
/// (with a message) when there is no Redis, except under `CI=true`, where that fails.
pub async fn run_redis(name: &str, test: impl Future<Output = ()>) {
    let Some(engine) = redis_engine(name).await else {
        return;
    };
    let cleanup = DeleteKeys {
        url: redis_url().unwrap_or_default(),
        prefix: engine.prefix().unwrap_or_default().to_owned(),
    };
    let stopping = Arc::new(Mutex::new(Vec::new()));
    STOPPING
        .scope(stopping.clone(), TEST_ENGINE.scope(engine, test))
        .await;
    let tasks = std::mem::take(&mut *stopping.lock().unwrap());
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tokio::task::block_in_place(move || drop(cleanup));
}

tokio::task_local! {
    /// Tasks of the servers a Redis test dropped, still shutting down.
    static STOPPING: Arc<Mutex<Vec<JoinHandle<Result<(), server::ServerError>>>>>;
}

/// Deletes a prefix's keys when dropped, also when the test failed.
struct DeleteKeys {
    url: String,
    prefix: String,
}

impl Drop for DeleteKeys {
    fn drop(&mut self) {
        delete_keys(&self.url, &self.prefix);
    }
}

/// A Redis engine under a fresh prefix for the test `name`; `None` (after saying so) when no
/// Redis can be had outside CI. Under `CI=true` a missing Redis fails the test.
pub async fn redis_engine(name: &str) -> Option<TestEngine> {
    match tokio::task::spawn_blocking(redis_url).await.unwrap() {
        Ok(_) => Some(TestEngine::fresh_redis()),
        Err(why) if on_ci() => panic!(
            "{name}: CI=true and no Redis: {why}. CI must provide one (.ci/run starts \
             redis-server on 127.0.0.1:6379; or set REDIS_URL)"
        ),
        Err(why) => {
            eprintln!("skipping {name}: {why} (install redis-server or set REDIS_URL)");
            None
        }
    }
}

/// True under CI (`CI=true` or `CI=1`), where a missing Redis is an error, not a skip.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Where Redis is looked for first.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

static REDIS: OnceLock<Result<String, String>> = OnceLock::new();

/// The Redis the Redis variants use, found once per test process: `REDIS_URL` (else
/// `redis://127.0.0.1:6379`) when it answers PING; otherwise a private `redis-server` on a free
/// port started for this process (stopped by a watchdog when the process exits); otherwise
/// `Err` saying why. Blocks while looking.
pub fn redis_url() -> Result<String, String> {
    REDIS.get_or_init(find_redis).clone()
}

fn find_redis() -> Result<String, String> {
    let url = std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
    let unreachable = match redis_ping(&url) {
        Ok(()) => return Ok(url),
        Err(error) => error,
    };
    eprintln!("no Redis answers at {url} ({unreachable}); starting a private redis-server");
    let mut last_error = String::new();
    // A free port can be taken by someone else before redis-server binds it: try a few.
    for _ in 0..3 {
        match RedisProcess::start(unused_port()) {
            Ok(process) => {
                let url = process.url();
                // Never dropped: it serves the whole test process, and its watchdog stops it
                // when the process exits.
                std::mem::forget(process);
                return Ok(url);
            }
            Err(error) => last_error = error,
        }
    }
    Err(format!(
        "nothing answers at {url} ({unreachable}) and no private redis-server could be \
         started ({last_error})"
    ))
}

/// PINGs the Redis at `url` (blocking, a few seconds at most).
pub fn redis_ping(url: &str) -> Result<(), String> {
    let client = ::redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    connection
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let pong: String = ::redis::cmd("PING")
        .query(&mut connection)
        .map_err(|e| e.to_string())?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {pong:?}"))
    }
}

/// An async connection to the Redis at `url`, for tests that inspect it.
pub async fn redis_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Deletes every key under `prefix` (best effort, blocking: tidies a shared Redis after a test).
pub fn delete_keys(url: &str, prefix: &str) {
    if url.is_empty() || prefix.is_empty() {
        return;
    }
    let Ok(client) = ::redis::Client::open(url) else {
        return;
    };
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return;
    };
    let _ = connection.set_read_timeout(Some(Duration::from_secs(5)));
    let mut cursor: u64 = 0;
    loop {
        let scanned: Result<(u64, Vec<String>), _> = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut connection);
        let Ok((next, keys)) = scanned else {
            return;
        };
        if !keys.is_empty() {
            let _: Result<i64, _> = ::redis::cmd("UNLINK").arg(&keys).query(&mut connection);
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A TCP port that was free a moment ago.
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops redis-server (`$2`) once this test process (`$1`) is gone, however it ended.
const WATCHDOG: &str = r#"while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -9 "$2" 2>/dev/null"#;

/// A private `redis-server` on 127.0.0.1 (no persistence: a restart loses everything), killed
/// when dropped and, should this process die first, by a watchdog shell.
pub struct RedisProcess {
    /// Its port.
    pub port: u16,
    server: Option<Child>,
    watchdog: Option<Child>,
}

impl RedisProcess {
    /// Starts redis-server on `port` and waits until it answers PING.
    pub fn start(port: u16) -> Result<Self, String> {
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "redis-watchdog"])
            .arg(std::process::id().to_string())
            .arg(server.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let mut process = Self {
            port,
            server: Some(server),
            watchdog,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ping = redis_ping(&process.url());
            if ping.is_ok() {
                return Ok(process);
            }
            if let Some(server) = process.server.as_mut()
                && let Ok(Some(status)) = server.try_wait()
            {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} does not answer: {}",
                    ping.unwrap_err()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills redis-server with SIGKILL (no goodbye, no save) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }

    /// Kills redis-server and starts a new one on the same port (empty: nothing was saved).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        *self = Self::start(self.port)?;
        Ok(())
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
