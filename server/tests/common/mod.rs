//! Test harness: a real server on an ephemeral port and real WebSocket clients.
//!
//! Here: [`TestServer`] and the HTTP helpers. The WebSocket [`Client`] is in `client`, the
//! engines (memory or Redis, `per_engine!`, `redis_only!`, the test Redis) in `engines`; both
//! are re-exported, so `use common::*;` reaches everything. `tokens` (identity tests),
//! `cluster` (multi-node tests), `redis_cluster` (a private Redis Cluster) and `process` (the
//! binary as a process) are imported on their own.
#![allow(dead_code)]

pub mod browser;
mod client;
pub mod cluster;
mod engines;
pub mod process;
pub mod redis_cluster;
pub mod tokens;

pub use client::*;
pub use engines::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engines::STOPPING;
use protocol::LoginResponse;
use serde_json::Value;
use server::config::{Config, EngineKind};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The admin token of tests that use the admin API (the server refuses one under 16 bytes).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

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
    config.engine.database = dir.join("chat.db");
    config.shutdown_grace = Duration::from_secs(2);
    // Every test client logs in from 127.0.0.1; tests/guards.rs checks the login limit itself.
    config.limits.logins_per_minute = 100_000;
    config.limits.login_burst = 10_000;
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
        Self::start_hooked(config, dir, server::Hooks::default()).await
    }

    /// A server with this configuration and a game's own checks.
    pub async fn start_hooked(
        config: Config,
        dir: tempfile::TempDir,
        hooks: server::Hooks,
    ) -> Self {
        let server = server::Server::bind_with(config.clone(), hooks)
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

    /// The value of `chat_limit_hits_total{limit="..."}` (0 when absent).
    pub async fn limit_hits(&self, limit: &str) -> u64 {
        let (_, body) = self.get("/metrics").await;
        let needle = format!("chat_limit_hits_total{{limit=\"{limit}\"}} ");
        body.lines()
            .find_map(|line| line.strip_prefix(&needle))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// GET with the admin token (when given): (status, body).
    pub async fn admin_get(&self, path_and_query: &str, bearer: Option<&str>) -> (u16, String) {
        let headers = bearer.map(|token| ("Authorization".to_owned(), format!("Bearer {token}")));
        let url = format!("{}{}", self.http(), path_and_query);
        http_send(url, headers.into_iter().collect(), None).await
    }

    /// POST JSON with optional bearer token: (status, body).
    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, String) {
        http_post(format!("{}{}", self.http(), path), bearer, body).await
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

/// POST JSON to `url` with an optional bearer token: (status, body).
pub async fn http_post(url: String, bearer: Option<&str>, body: Value) -> (u16, String) {
    let headers = bearer.map(|token| ("Authorization".to_owned(), format!("Bearer {token}")));
    http_send(url, headers.into_iter().collect(), Some(body)).await
}

/// GET (no body) or POST (a JSON body) with these headers: (status, body).
pub async fn http_send(
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let agent = agent();
        let response = match body {
            Some(body) => {
                let mut request = agent.post(&url);
                for (name, value) in &headers {
                    request = request.header(name, value);
                }
                request.send_json(body)
            }
            None => {
                let mut request = agent.get(&url);
                for (name, value) in &headers {
                    request = request.header(name, value);
                }
                request.call()
            }
        };
        let mut response = response.expect("http request");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    })
    .await
    .unwrap()
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
    http_send(url, Vec::new(), None).await
}

/// The `(user_id, username)` pairs of a `presence` payload's users, sorted (`""` for no name).
pub fn presence_users(users: &serde_json::Value) -> Vec<(String, String)> {
    let mut users: Vec<(String, String)> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap().to_owned(),
                u["username"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    users.sort();
    users
}

/// The texts of a `history` payload's messages, in order.
pub fn texts(messages: &serde_json::Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect()
}
