//! Engines: every protocol test runs on the in-process engine (memory only, and with the
//! embedded database, the default), on Redis and on a Redis Cluster. The engine
//! of the running test (a task-local), the `per_engine!` and `redis_only!` macros, and the
//! Redis the Redis variants use (found once per process, else a private `redis-server`).

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use server::config::{Config, EngineKind};
use tokio::task::JoinHandle;

use super::redis_cluster::cluster_seeds;

/// The engine the servers of a test run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestEngine {
    /// The in-process engine, nothing kept (the harness's default).
    Memory,
    /// The in-process engine with the embedded database (the server's default), in the test
    /// server's directory.
    Sqlite,
    /// Redis at [`redis_url`], every key and channel under `prefix` (unique per test, so tests
    /// sharing one Redis never see each other).
    Redis {
        /// Key and channel prefix, e.g. `test-<uuid>:`.
        prefix: String,
    },
    /// The Redis Cluster of this test process ([`cluster_seeds`]), under `prefix`.
    RedisCluster {
        /// Key and channel prefix.
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
            TestEngine::Memory | TestEngine::Sqlite => None,
            TestEngine::Redis { prefix } | TestEngine::RedisCluster { prefix } => Some(prefix),
        }
    }

    /// Points `config` at this engine.
    pub fn apply(&self, config: &mut Config) {
        match self {
            TestEngine::Memory => {
                config.engine.kind = Some(EngineKind::Memory);
                config.engine.redis_url = None;
            }
            TestEngine::Sqlite => {
                config.engine.kind = Some(EngineKind::Sqlite);
                config.engine.redis_url = None;
            }
            TestEngine::Redis { prefix } => {
                let url = redis_url().unwrap_or_else(|why| panic!("{why}"));
                config.engine.kind = Some(EngineKind::Redis);
                config.engine.redis_url = Some(url);
                config.engine.redis_cluster = Vec::new();
                config.engine.redis_prefix = prefix.clone();
            }
            TestEngine::RedisCluster { prefix } => {
                let seeds = cluster_seeds().unwrap_or_else(|why| panic!("{why}"));
                config.engine.kind = Some(EngineKind::Redis);
                config.engine.redis_url = None;
                config.engine.redis_cluster = seeds;
                config.engine.redis_prefix = prefix.clone();
            }
        }
    }
}

/// Generates, for each named `async fn` (no arguments, at the top level of the test file, with
/// no test attribute of its own), four tests: `memory::name`, `sqlite::name`, `redis::name` and
/// `redis_cluster::name`. Each runs the fn with [`TEST_ENGINE`] set, so every
/// [`TestServer::start`] in it uses that engine; the Redis ones get a fresh key prefix. Without
/// a Redis (or `redis-server` to start a cluster with) the Redis variants skip, or fail under
/// `CI=true` (see [`redis_url`], [`cluster_seeds`]).
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
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $crate::common::run_sqlite(super::$test()).await;
                }
            )+
        }
        $crate::redis_only!($($test),+);
        $crate::cluster_only!($($test),+);
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

/// Generates, for each named `async fn` (no arguments, no test attribute), the test
/// `redis_cluster::name`: as the cluster third of [`per_engine!`] (list a test in
/// [`redis_only!`] too to run it on a single Redis as well).
#[macro_export]
macro_rules! cluster_only {
    ($($test:ident),+ $(,)?) => {
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $crate::common::run_redis_cluster(
                        concat!("redis_cluster::", stringify!($test)),
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

/// Runs a test body on the in-process engine with the embedded database.
pub async fn run_sqlite(test: impl Future<Output = ()>) {
    TEST_ENGINE.scope(TestEngine::Sqlite, test).await;
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

/// Runs a test body on this process's Redis Cluster under a fresh prefix (the cluster is
/// private to the process, so nothing is deleted after). Skips (with a message) when no cluster
/// can be started, except under `CI=true`, where that fails.
pub async fn run_redis_cluster(name: &str, test: impl Future<Output = ()>) {
    match tokio::task::spawn_blocking(cluster_seeds).await.unwrap() {
        Ok(_) => {}
        Err(why) if on_ci() => panic!(
            "{name}: CI=true and no Redis Cluster: {why}. CI must have redis-server and \
             redis-cli installed (.ci/run installs them)"
        ),
        Err(why) => {
            eprintln!("skipping {name}: {why}");
            return;
        }
    }
    let engine = TestEngine::RedisCluster {
        prefix: format!("test-{}:", uuid::Uuid::new_v4()),
    };
    let stopping = Arc::new(Mutex::new(Vec::new()));
    STOPPING
        .scope(stopping.clone(), TEST_ENGINE.scope(engine, test))
        .await;
    let tasks = std::mem::take(&mut *stopping.lock().unwrap());
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

tokio::task_local! {
    /// Tasks of the servers a Redis test dropped, still shutting down (see `TestServer`'s `Drop`).
    pub(super) static STOPPING: Arc<Mutex<Vec<JoinHandle<Result<(), server::ServerError>>>>>;
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

/// A private redis-server for a test that kills or restarts it (never the shared one), on a
/// free port (a few tries: another process may take the port first). `None`, after saying why,
/// when there is no redis-server; under `CI=true` that fails the test instead.
pub async fn private_redis(name: &str) -> Option<RedisProcess> {
    let mut why = String::new();
    for _ in 0..3 {
        match tokio::task::spawn_blocking(|| RedisProcess::start(unused_port()))
            .await
            .unwrap()
        {
            Ok(process) => return Some(process),
            Err(error) => why = error,
        }
    }
    assert!(
        !on_ci(),
        "{name}: CI=true and this test needs redis-server: {why}"
    );
    eprintln!("skipping {name}: {why}");
    None
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
    /// The arguments it was started with beyond port and persistence (kept for a restart).
    args: Vec<String>,
    server: Option<Child>,
    watchdog: Option<Child>,
}

impl RedisProcess {
    /// Starts redis-server on `port` and waits until it answers PING.
    pub fn start(port: u16) -> Result<Self, String> {
        let dir = std::env::temp_dir();
        Self::start_with(port, &["--dir", dir.to_str().unwrap_or("/tmp")])
    }

    /// Starts redis-server on `port` with `args` added (e.g. cluster settings, a `--dir`), and
    /// waits until it answers PING.
    pub fn start_with(port: u16, args: &[&str]) -> Result<Self, String> {
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(args)
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
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
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

    /// True until [`RedisProcess::kill`].
    pub fn is_running(&self) -> bool {
        self.server.is_some()
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
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        *self = Self::start_with(self.port, &args)?;
        Ok(())
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
