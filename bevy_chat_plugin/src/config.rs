//! The plugin's configuration.

use std::path::PathBuf;
use std::time::Duration;

/// How the plugin gets its access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLogin {
    /// Log in as a guest through the server's `/login-as-guest`. The guest's credentials are
    /// saved to `credentials_file` (default: `guest.json` in the platform data directory of the
    /// app, see [`ChatPlugin::app_name`]) and reused, so the player stays the same user.
    Guest {
        /// Where the guest credentials are kept; `None` for the platform data directory.
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
/// ```no_run
/// use bevy::prelude::*;
/// use bevy_chat_plugin::{Chat, ChatMessageReceived, ChatPlugin};
///
/// fn main() {
///     App::new()
///         .add_plugins((MinimalPlugins, ChatPlugin::new("http://127.0.0.1:8080")))
///         .add_systems(Startup, |mut chat: Chat| {
///             chat.set_name("Ann");
///             chat.join("lobby");
///         })
///         .add_systems(Update, |mut received: MessageReader<ChatMessageReceived>| {
///             for m in received.read() {
///                 println!("[{}] {}: {}", m.channel, m.username, m.text);
///             }
///         })
///         .run();
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ChatPlugin {
    /// Base URL of the chat server, `http://host:port` or `https://host`. Login uses it as is;
    /// the WebSocket uses `ws://` / `wss://` on the same host.
    pub server_url: String,
    /// Where the access token comes from.
    pub login: ChatLogin,
    /// Used for the default credentials directory (`<data dir>/<app_name>/guest.json`).
    pub app_name: String,
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
}

impl ChatPlugin {
    /// Guest login against `server_url` with every other setting at its default.
    pub fn new(server_url: impl Into<String>) -> Self {
        Self {
            server_url: server_url.into(),
            login: ChatLogin::default(),
            app_name: "bevy_chat".into(),
            reconnect: ReconnectPolicy::default(),
            history_on_join: 20,
            log_lines: 200,
            queue_capacity: 1024,
            auto_connect: true,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Sets how the token is obtained.
    pub fn with_login(mut self, login: ChatLogin) -> Self {
        self.login = login;
        self
    }

    /// Guest login with credentials kept in `path`.
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

    /// The credentials file for guest login.
    pub(crate) fn credentials_path(&self) -> Option<PathBuf> {
        match &self.login {
            ChatLogin::Guest {
                credentials_file: Some(path),
            } => Some(path.clone()),
            ChatLogin::Guest {
                credentials_file: None,
            } => directories::ProjectDirs::from("", "", &self.app_name)
                .map(|dirs| dirs.data_dir().join("guest.json")),
            ChatLogin::Token(_) => None,
        }
    }
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
