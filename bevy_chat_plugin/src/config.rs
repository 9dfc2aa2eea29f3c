//! The plugin's configuration.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How the plugin gets its access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLogin {
    /// Log in as a guest through the server's `/login-as-guest`. The guest's credentials are
    /// saved and reused, so the player stays the same user: by default in one file per server
    /// (see [`ChatPlugin::credentials_path`]).
    Guest {
        /// One file for the guest credentials whatever the server; `None` (the default) for
        /// one file per server in [`ChatPlugin::credentials_dir`].
        credentials_file: Option<PathBuf>,
    },
    /// Use a token from your own identity service (external issuer mode on the server). When it
    /// expires, hand the plugin a new one with [`Chat::set_token`](crate::Chat::set_token).
    Token(String),
}

impl Default for ChatLogin {
    fn default() -> Self {
        ChatLogin::Guest {
            credentials_file: None,
        }
    }
}

/// Backoff between reconnect attempts: exponential from `initial` up to `max`, each delay
/// randomised by ±`jitter` (a fraction) so that many clients do not reconnect in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// First delay after a connection drops.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Random spread of each delay, 0.0 to 1.0.
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            jitter: 0.3,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max);
        let spread = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + spread * (fastrand::f64() * 2.0 - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

/// Adds chat to a Bevy app.
///
/// Name your game with [`ChatPlugin::with_app_name`]: the guest identity is saved per game and
/// per server (`<data dir>/<app name>/chat/<server>.json`). Without it every game using this
/// plugin on the machine shares one identity per server, and the plugin warns once.
///
/// ```
/// use bevy::prelude::*;
/// use bevy_chat_plugin::{Chat, ChatConnectionState, ChatMessageReceived, ChatPlugin};
///
/// let mut plugin = ChatPlugin::new("http://127.0.0.1:8080").with_app_name("my_game");
/// // A game leaves this on; off, the example runs without a server.
/// plugin.auto_connect = false;
/// let mut app = App::new();
/// app.add_plugins((MinimalPlugins, plugin))
///     .add_systems(Startup, |mut chat: Chat| {
///         // Remembered and applied on every connect.
///         chat.set_name("Ann");
///         chat.join("lobby");
///     })
///     .add_systems(Update, |mut received: MessageReader<ChatMessageReceived>| {
///         for m in received.read() {
///             println!("[{}] {}: {}", m.channel, m.username, m.text);
///         }
///     });
/// app.update(); // a game calls `app.run()`
/// assert_eq!(
///     *app.world().resource::<ChatConnectionState>(),
///     ChatConnectionState::Disconnected
/// );
/// ```
#[derive(Debug, Clone)]
pub struct ChatPlugin {
    /// Base URL of the chat server, `http://host:port` or `https://host`. Login uses it as is;
    /// the WebSocket uses `ws://` / `wss://` on the same host.
    pub server_url: String,
    /// Where the access token comes from.
    pub login: ChatLogin,
    /// The game's name, for the default credentials directory
    /// (`<data dir>/<app_name>/chat/`). `None` uses `bevy_chat`, shared by every game that
    /// leaves it unset (the plugin warns once).
    pub app_name: Option<String>,
    /// Where guest credentials are kept, one file per server (named after its host and port);
    /// `None` for `<data dir>/<app_name>/chat/`.
    pub credentials_dir: Option<PathBuf>,
    /// Reconnect backoff.
    pub reconnect: ReconnectPolicy,
    /// Messages of history asked for when joining a channel for the first time.
    pub history_on_join: u32,
    /// Lines kept per channel in [`ChatLog`](crate::ChatLog).
    pub log_lines: usize,
    /// Capacity of the command and event channels between the game and the network thread.
    pub queue_capacity: usize,
    /// Connect when the app starts (otherwise call [`Chat::connect`](crate::Chat::connect)).
    pub auto_connect: bool,
    /// Longest wait for an HTTP login or a WebSocket handshake.
    pub connect_timeout: Duration,
    /// Write login and connection failures to the log (`warn!`, at most one line per kind of
    /// failure every 30 s, counting those left out). They are [`ChatError`](crate::ChatError)
    /// messages either way.
    pub log_failures: bool,
}

impl ChatPlugin {
    /// Guest login against `server_url` with every other setting at its default.
    pub fn new(server_url: impl Into<String>) -> Self {
        Self {
            server_url: server_url.into(),
            login: ChatLogin::default(),
            app_name: None,
            credentials_dir: None,
            reconnect: ReconnectPolicy::default(),
            history_on_join: 20,
            log_lines: 200,
            queue_capacity: 1024,
            auto_connect: true,
            connect_timeout: Duration::from_secs(10),
            log_failures: true,
        }
    }

    /// Names the game: saved guest identities go to `<data dir>/<app_name>/chat/`, apart from
    /// other games'.
    pub fn with_app_name(mut self, app_name: impl Into<String>) -> Self {
        self.app_name = Some(app_name.into());
        self
    }

    /// Keeps guest credentials in `dir`, one file per server.
    pub fn with_credentials_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.credentials_dir = Some(dir.into());
        self
    }

    /// Whether login and connection failures are written to the log (default: yes).
    pub fn with_log_failures(mut self, log_failures: bool) -> Self {
        self.log_failures = log_failures;
        self
    }

    /// Sets how the token is obtained.
    pub fn with_login(mut self, login: ChatLogin) -> Self {
        self.login = login;
        self
    }

    /// Guest login with credentials kept in `path`, whatever the server (prefer
    /// [`ChatPlugin::with_credentials_dir`] when the game may talk to several servers: a new
    /// guest on one server would replace the identity saved for another).
    pub fn with_credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.login = ChatLogin::Guest {
            credentials_file: Some(path.into()),
        };
        self
    }

    /// Sets the reconnect backoff.
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Checks the settings that would make the chat fail forever, before anything starts.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let url = self.server_url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "the chat server URL {url:?} has no scheme: write http://host:port or https://host"
            ));
        };
        if !matches!(scheme, "http" | "https") {
            return Err(format!(
                "the chat server URL {url:?} must start with http:// or https:// \
                 (the WebSocket URL is derived from it)"
            ));
        }
        if rest.trim_end_matches('/').is_empty() {
            return Err(format!("the chat server URL {url:?} has no host"));
        }
        Ok(())
    }

    /// The WebSocket URL for a token.
    pub(crate) fn websocket_url(&self, token: &str) -> String {
        let base = self.server_url.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        };
        format!("{base}/?auth_token={token}")
    }

    /// The file the guest credentials for this server are saved to: the
    /// [`credentials_file`](ChatLogin::Guest) when one is set, else `<server>.json` in
    /// [`credentials_dir`](ChatPlugin::credentials_dir) or `<data dir>/<app_name>/chat/`.
    /// `None` with a token of the game's own, or when the platform has no data directory.
    pub fn credentials_path(&self) -> Option<PathBuf> {
        let ChatLogin::Guest { credentials_file } = &self.login else {
            return None;
        };
        if let Some(path) = credentials_file {
            return Some(path.clone());
        }
        let dir = match &self.credentials_dir {
            Some(dir) => dir.clone(),
            None => {
                let app = self.app_name.as_deref().unwrap_or(SHARED_APP_NAME);
                directories::ProjectDirs::from("", "", app)?
                    .data_dir()
                    .join("chat")
            }
        };
        Some(dir.join(format!("{}.json", server_file_stem(&self.server_url))))
    }

    /// Where versions before per-server files kept the guest (`<data dir>/<app_name>/guest.json`,
    /// one file for every server). Read once when this server's file does not exist yet, so a
    /// player keeps their identity across the upgrade; never written.
    pub(crate) fn legacy_credentials_path(&self) -> Option<PathBuf> {
        let default_place = matches!(
            self.login,
            ChatLogin::Guest {
                credentials_file: None
            }
        ) && self.credentials_dir.is_none();
        if !default_place {
            return None;
        }
        let app = self.app_name.as_deref().unwrap_or(SHARED_APP_NAME);
        Some(
            directories::ProjectDirs::from("", "", app)?
                .data_dir()
                .join("guest.json"),
        )
    }

    /// Warns (once per process) when guest identities go to the directory shared by every
    /// game that did not name itself.
    pub(crate) fn warn_if_identities_shared(&self) {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if self.shares_identities() && !WARNED.swap(true, Ordering::Relaxed) {
            bevy::log::warn!(
                "chat: no app name set (ChatPlugin::with_app_name): the guest identity is saved \
                 in the {SHARED_APP_NAME:?} data directory that every game without one shares"
            );
        }
    }
}

impl ChatPlugin {
    /// Guest credentials go to the directory shared by every game that did not name itself.
    fn shares_identities(&self) -> bool {
        matches!(
            self.login,
            ChatLogin::Guest {
                credentials_file: None
            }
        ) && self.credentials_dir.is_none()
            && self.app_name.is_none()
    }
}

/// The data directory of games that did not set [`ChatPlugin::app_name`].
const SHARED_APP_NAME: &str = "bevy_chat";

/// A file name for a server URL: `host_port`, plus its path if any (`chat.example_443`,
/// `127.0.0.1_8080`), with anything but letters, digits, `.` and `-` replaced by `_`; a hash
/// of the whole is appended when something was replaced, so that two servers never share one.
fn server_file_stem(server_url: &str) -> String {
    let url = server_url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => (&rest[..at], rest[at..].trim_matches('/')),
        None => (rest, ""),
    };
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            (host, port.to_owned())
        }
        _ => (
            authority,
            if scheme == "https" { "443" } else { "80" }.to_owned(),
        ),
    };
    let mut raw = format!("{}_{port}", host.to_ascii_lowercase());
    if !path.is_empty() {
        raw = format!("{raw}_{path}");
    }
    let mut replaced = false;
    let mut stem: String = raw
        .chars()
        .enumerate()
        .map(|(n, c)| {
            let keep = c.is_ascii_alphanumeric() || c == '-' || (c == '.' && n > 0);
            // The `_` between host and port is ours.
            if !keep && (c != '_' || n != host.len()) {
                replaced = true;
            }
            if keep { c } else { '_' }
        })
        .take(100)
        .collect();
    if replaced || raw.chars().count() > 100 {
        // FNV-1a: stable across runs and platforms (a file name must not change).
        let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        stem.push_str(&format!("-{:08x}", hash as u32));
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_follow_the_http_scheme() {
        let plugin = ChatPlugin::new("http://127.0.0.1:8080/");
        assert_eq!(
            plugin.websocket_url("t"),
            "ws://127.0.0.1:8080/?auth_token=t"
        );
        let plugin = ChatPlugin::new("https://chat.example");
        assert_eq!(
            plugin.websocket_url("t"),
            "wss://chat.example/?auth_token=t"
        );
    }

    #[test]
    fn credentials_are_kept_per_game_and_server() {
        let dir = std::path::Path::new("/saves");
        let path = |url: &str| {
            ChatPlugin::new(url)
                .with_credentials_dir(dir)
                .credentials_path()
                .unwrap()
        };
        assert_eq!(
            path("http://127.0.0.1:8080"),
            dir.join("127.0.0.1_8080.json")
        );
        assert_eq!(
            path("http://127.0.0.1:8080/"),
            dir.join("127.0.0.1_8080.json")
        );
        assert_eq!(
            path("https://Chat.Example"),
            dir.join("chat.example_443.json")
        );
        assert_eq!(
            path("http://chat.example"),
            dir.join("chat.example_80.json")
        );
        assert_ne!(path("http://127.0.0.1:8080"), path("http://127.0.0.1:8081"));
        // Anything unusual is replaced and the file name gets a hash of the whole.
        let odd = [
            path("http://[::1]:8080"),
            path("http://chat.example/eu"),
            path("http://chat.example/eu_"),
            path("http://../x"),
        ];
        for (n, a) in odd.iter().enumerate() {
            let name = a.file_name().unwrap().to_str().unwrap();
            assert!(!name.starts_with('.'), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{name}"
            );
            assert_eq!(a.parent(), Some(dir), "{a:?}");
            for b in &odd[n + 1..] {
                assert_ne!(a, b);
            }
        }
        // The game's name picks the directory under the platform's data directory.
        let game = ChatPlugin::new("http://127.0.0.1:8080").with_app_name("my_game");
        if let Some(path) = game.credentials_path() {
            assert!(path.ends_with("chat/127.0.0.1_8080.json"), "{path:?}");
            assert!(
                path.components()
                    .any(|c| c.as_os_str().to_string_lossy().contains("my_game")),
                "{path:?}"
            );
            let other = ChatPlugin::new("http://127.0.0.1:8080").with_app_name("other_game");
            assert_ne!(other.credentials_path(), Some(path));
        }
        // A file of the game's choosing is used as is; a token of its own needs none.
        let file = ChatPlugin::new("http://a").with_credentials_file("/x/g.json");
        assert_eq!(file.credentials_path(), Some("/x/g.json".into()));
        let token = ChatPlugin::new("http://a").with_login(ChatLogin::Token("t".into()));
        assert_eq!(token.credentials_path(), None);
    }

    #[test]
    fn only_an_unnamed_game_with_default_credentials_shares_identities() {
        let url = "http://127.0.0.1:8080";
        assert!(ChatPlugin::new(url).shares_identities());
        assert!(!ChatPlugin::new(url).with_app_name("g").shares_identities());
        assert!(
            !ChatPlugin::new(url)
                .with_credentials_dir("/d")
                .shares_identities()
        );
        assert!(
            !ChatPlugin::new(url)
                .with_credentials_file("/f")
                .shares_identities()
        );
        let token = ChatPlugin::new(url).with_login(ChatLogin::Token("t".into()));
        assert!(!token.shares_identities());
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let policy = ReconnectPolicy::default();
        for attempt in 0..30 {
            let delay = policy.delay(attempt);
            assert!(delay <= policy.max.mul_f64(1.0 + policy.jitter));
        }
        let first = policy.delay(0);
        assert!(first >= Duration::from_millis(350) && first <= Duration::from_millis(650));
        let no_jitter = ReconnectPolicy {
            jitter: 0.0,
            ..policy
        };
        assert_eq!(no_jitter.delay(3), Duration::from_secs(4));
        assert_eq!(no_jitter.delay(10), Duration::from_secs(30));
    }
}
