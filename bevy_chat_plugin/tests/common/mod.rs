//! Test harness: a real chat server in this process (on its own tokio runtime), headless Bevy
//! apps with the plugin, a recorder of every chat message, and helpers that drive `app.update()`
//! until a condition holds.
//!
//! Tests are plain `#[test]` functions: the main thread only calls `app.update()`; the server,
//! the proxies and the plugin's network thread run elsewhere.
#![allow(dead_code)]

pub mod logs;
pub mod net;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bevy::ecs::system::RunSystemOnce;
use bevy::prelude::*;
use bevy_chat_plugin::*;
use protocol::LoginResponse;
use server::config::Config;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest wait for any single expected event.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Bearer token of the test server's admin API.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The RSA key committed for the server's tests (generating one per server would be slow).
pub const FIXTURE_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../server/tests/fixtures/test-key.pem"
);

/// A chat server running in this process on its own multi-thread runtime. It can be stopped and
/// started again on the same port with the same key and guest files, so tokens and saved guest
/// credentials stay valid across a restart (channels, names and history do not: the memory
/// engine starts empty).
pub struct TestServer {
    runtime: Option<Runtime>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    running: Option<Running>,
    tune: fn(&mut Config),
}

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), server::ServerError>>,
}

impl TestServer {
    /// Starts a server on an ephemeral port.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Starts a server on an ephemeral port with settings changed by `tune` (applied again on
    /// a restart).
    pub fn start_with(tune: fn(&mut Config)) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-chat-server")
            .enable_all()
            .build()
            .expect("server runtime");
        let dir = tempfile::tempdir().expect("server temp dir");
        // The server may write its key file: give it a copy.
        std::fs::copy(FIXTURE_KEY, dir.path().join("key.pem")).expect("copy the fixture key");
        let mut server = Self {
            runtime: Some(runtime),
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            running: None,
            tune,
        };
        server.launch();
        server
    }

    fn config(&self) -> Config {
        let mut config = Config::defaults();
        config.listen = self.addr;
        config.identity.key_file = self.dir.path().join("key.pem");
        config.identity.guest_file = self.dir.path().join("guests.jsonl");
        config.engine.database = self.dir.path().join("chat.db");
        config.admin_token = Some(ADMIN_TOKEN.into());
        config.shutdown_grace = Duration::from_secs(2);
        // Every test app logs in from 127.0.0.1.
        config.limits.logins_per_minute = 100_000;
        config.limits.login_burst = 10_000;
        (self.tune)(&mut config);
        config
    }

    fn launch(&mut self) {
        assert!(self.running.is_none(), "the server is already running");
        let config = self.config();
        let runtime = self.runtime();
        let deadline = Instant::now() + TIMEOUT;
        let server = loop {
            match runtime.block_on(server::Server::bind(config.clone())) {
                Ok(server) => break server,
                // A restart on the same port: the old listener may take a moment to go.
                Err(error) if self.addr.port() != 0 && Instant::now() < deadline => {
                    eprintln!("rebinding {}: {error}; retrying", self.addr);
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!("the test server cannot start: {error}"),
            }
        };
        let addr = server.local_addr();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = runtime.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        self.addr = addr;
        self.running = Some(Running { shutdown, task });
    }

    /// Stops the server as on SIGTERM (every WebSocket gets close 1001) and waits until it is
    /// gone and its port is free.
    pub fn stop(&mut self) {
        let Running { shutdown, task } = self.running.take().expect("the server is running");
        let _ = shutdown.send(());
        self.runtime()
            .block_on(async { tokio::time::timeout(TIMEOUT, task).await })
            .expect("the server stops in time")
            .expect("the server task does not panic")
            .expect("the server exits cleanly");
    }

    /// Starts the server again on the same port, key and guest file.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// The runtime the server runs on (proxies run there too).
    pub fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime present")
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`, the URL the plugin is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Logs in a new guest over HTTP (blocking; fine on a test thread).
    pub fn login_as_guest(&self) -> LoginResponse {
        let mut response = ureq::get(format!("{}/login-as-guest", self.url()))
            .call()
            .expect("GET /login-as-guest");
        let body = response.body_mut().read_to_string().expect("login body");
        serde_json::from_str(&body).expect("a login response")
    }

    /// An operator announcement to everyone connected.
    pub fn broadcast(&self, text: &str) {
        let response = ureq::post(format!("{}/admin/broadcast", self.url()))
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .send_json(serde_json::json!({ "message": text }))
            .expect("POST /admin/broadcast");
        assert_eq!(response.status().as_u16(), 200);
    }
}

impl TestServer {
    /// `POST /admin/{action}` for `user_id` (mute, unmute, kick, ban, unban).
    pub fn moderate(&self, action: &str, user_id: &str, reason: &str) {
        let response = ureq::post(format!("{}/admin/{action}", self.url()))
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .send_json(serde_json::json!({ "user_id": user_id, "reason": reason }))
            .expect("POST /admin/...");
        assert_eq!(response.status().as_u16(), 200);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Reconnect quickly and predictably in tests.
pub fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        jitter: 0.0,
    }
}

/// Guest login against `url` with credentials kept in `credentials`, fast reconnects.
pub fn guest_plugin(url: &str, credentials: &Path) -> ChatPlugin {
    ChatPlugin::new(url)
        .with_credentials_file(credentials)
        .with_reconnect(fast_reconnect())
}

/// A headless app: `MinimalPlugins`, this chat plugin and the [`Recorder`], ready to update.
pub fn app_with(plugin: ChatPlugin) -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, plugin, Recorder));
    app.finish();
    app.cleanup();
    app
}

/// A headless guest app against `url`.
pub fn guest_app(url: &str, credentials: &Path) -> App {
    app_with(guest_plugin(url, credentials))
}

/// Everything the plugin told the app, in arrival order.
#[derive(Resource, Debug, Default)]
pub struct Recorded {
    pub messages: Vec<ChatMessageReceived>,
    pub directs: Vec<DirectMessageReceived>,
    pub broadcasts: Vec<BroadcastReceived>,
    pub joined: Vec<ChatJoined>,
    pub left: Vec<ChatLeft>,
    pub names: Vec<NameSet>,
    pub presence: Vec<PresenceChanged>,
    pub errors: Vec<ChatError>,
    pub connected: Vec<ChatConnected>,
    pub disconnected: Vec<ChatDisconnected>,
    pub typing: Vec<ChatUserTyping>,
    pub block_lists: Vec<ChatBlockListChanged>,
    /// `ChatConnectionState` each time it changed (as seen in `Update`).
    pub states: Vec<ChatConnectionState>,
    /// The player's user id as `Chat::user_id` reports it.
    pub user_id: Option<String>,
}

impl Recorded {
    /// Texts of the channel messages received in `channel`, in order.
    pub fn texts(&self, channel: &str) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|m| m.channel == channel)
            .map(|m| m.text.as_str())
            .collect()
    }

    /// The channel messages with this text.
    pub fn with_text(&self, text: &str) -> Vec<&ChatMessageReceived> {
        self.messages.iter().filter(|m| m.text == text).collect()
    }

    /// Whether a (first, not automatic) join of `channel` was confirmed.
    pub fn joined(&self, channel: &str) -> bool {
        self.joined.iter().any(|j| j.channel == channel)
    }

    /// Whether a join of `channel` after a reconnect was confirmed.
    pub fn rejoined(&self, channel: &str) -> bool {
        self.joined
            .iter()
            .any(|j| j.channel == channel && j.rejoined)
    }
}

/// Copies every chat message into [`Recorded`].
pub struct Recorder;

impl Plugin for Recorder {
    fn build(&self, app: &mut App) {
        app.init_resource::<Recorded>().add_systems(Update, record);
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    mut rec: ResMut<Recorded>,
    state: Res<ChatConnectionState>,
    chat: Chat,
    mut messages: MessageReader<ChatMessageReceived>,
    mut directs: MessageReader<DirectMessageReceived>,
    mut broadcasts: MessageReader<BroadcastReceived>,
    mut joined: MessageReader<ChatJoined>,
    mut left: MessageReader<ChatLeft>,
    mut names: MessageReader<NameSet>,
    mut presence: MessageReader<PresenceChanged>,
    mut errors: MessageReader<ChatError>,
    (mut connected, mut disconnected, mut typing, mut block_lists): (
        MessageReader<ChatConnected>,
        MessageReader<ChatDisconnected>,
        MessageReader<ChatUserTyping>,
        MessageReader<ChatBlockListChanged>,
    ),
) {
    let rec = &mut *rec;
    rec.messages.extend(messages.read().cloned());
    rec.directs.extend(directs.read().cloned());
    rec.broadcasts.extend(broadcasts.read().cloned());
    rec.joined.extend(joined.read().cloned());
    rec.left.extend(left.read().cloned());
    rec.names.extend(names.read().cloned());
    rec.presence.extend(presence.read().cloned());
    rec.errors.extend(errors.read().cloned());
    rec.connected.extend(connected.read().cloned());
    rec.disconnected.extend(disconnected.read().cloned());
    rec.typing.extend(typing.read().cloned());
    rec.block_lists.extend(block_lists.read().cloned());
    if state.is_changed() {
        rec.states.push(*state);
    }
    if rec.user_id.as_deref() != chat.user_id() {
        rec.user_id = chat.user_id().map(str::to_owned);
    }
}

/// What the recorder saw in this world.
pub fn rec(world: &World) -> &Recorded {
    world.resource::<Recorded>()
}

/// The current connection state.
pub fn state(world: &World) -> ChatConnectionState {
    *world.resource::<ChatConnectionState>()
}

/// The user id the plugin reports (`Chat::user_id`, as last recorded).
pub fn user_id(world: &World) -> Option<String> {
    rec(world).user_id.clone()
}

/// The user id in a saved guest credentials file, if there is a readable one.
pub fn saved_user_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let saved: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(saved["user_id"].as_str()?.to_owned())
}

/// Writes a guest credentials file as the plugin saves them.
pub fn write_credentials(path: &Path, user_id: &str, guest_secret: &str) {
    let text = serde_json::json!({ "user_id": user_id, "guest_secret": guest_secret });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text.to_string()).unwrap();
}

/// Queues chat commands as a game system would; they go out in the next update's `PostUpdate`.
pub fn chat(app: &mut App, f: impl FnOnce(&mut Chat) + Send + Sync + 'static) {
    let mut f = Some(f);
    app.world_mut()
        .run_system_once(move |mut chat: Chat| {
            if let Some(f) = f.take() {
                f(&mut chat);
            }
        })
        .expect("the Chat system runs");
}

/// Calls `app.update()` until `condition` holds; panics after `timeout` naming `what`.
pub fn update_until(
    app: &mut App,
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut(&World) -> bool,
) {
    update_all_until(&mut [app], timeout, what, |worlds| condition(worlds[0]));
}

/// Updates two apps until `condition` holds for them; panics after `timeout` naming `what`.
pub fn update_pair_until(
    a: &mut App,
    b: &mut App,
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut(&World, &World) -> bool,
) {
    update_all_until(&mut [a, b], timeout, what, |worlds| {
        condition(worlds[0], worlds[1])
    });
}

/// Updates every app (in order) until `condition` holds for their worlds; panics after `timeout`
/// with what each app recorded.
pub fn update_all_until(
    apps: &mut [&mut App],
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut(&[&World]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        for app in apps.iter_mut() {
            app.update();
        }
        let worlds: Vec<&World> = apps.iter().map(|app| app.world()).collect();
        if condition(&worlds) {
            return;
        }
        if Instant::now() >= deadline {
            let report: Vec<String> = worlds
                .iter()
                .enumerate()
                .map(|(n, world)| {
                    format!(
                        "app #{n}: state {:?}, user {:?}\n{:#?}",
                        state(world),
                        user_id(world),
                        rec(world)
                    )
                })
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                report.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the app is connected; returns its user id.
pub fn wait_connected(app: &mut App) -> String {
    update_until(app, TIMEOUT, "the chat to connect", |w| {
        state(w) == ChatConnectionState::Connected && user_id(w).is_some()
    });
    user_id(app.world()).unwrap()
}

/// Sets the name and waits for the server to accept it.
pub fn set_name(app: &mut App, name: &str) {
    let owned = name.to_owned();
    chat(app, move |chat| chat.set_name(owned));
    update_until(app, TIMEOUT, &format!("name {name:?} to be set"), |w| {
        rec(w).names.iter().any(|n| n.username == name)
    });
}

/// Joins a channel and waits for the server to confirm.
pub fn join(app: &mut App, channel: &str) {
    let owned = channel.to_owned();
    chat(app, move |chat| chat.join(owned));
    update_until(app, TIMEOUT, &format!("joining {channel:?}"), |w| {
        rec(w).joined(channel)
    });
}

/// Sends a message to a channel (without waiting).
pub fn send(app: &mut App, channel: &str, text: &str) {
    let (channel, text) = (channel.to_owned(), text.to_owned());
    chat(app, move |chat| chat.send(channel, text));
}

/// A connected guest app with a name, in `channel`; returns its user id.
pub fn ready_app(app: &mut App, name: &str, channel: &str) -> String {
    let id = wait_connected(app);
    set_name(app, name);
    join(app, channel);
    id
}
