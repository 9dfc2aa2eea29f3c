//! Server configuration: every setting is a CLI flag and an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::{Args, Parser, ValueEnum};

use crate::engine::sqlite::Durability;

/// bevy chat server: seed-compatible WebSocket chat with guest identity.
#[derive(Debug, Clone, Parser)]
#[command(name = "chat-server", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on; one port serves HTTP (identity, health, metrics, admin) and WebSocket.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Log output format.
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Identity (tokens, guest login) settings.
    #[command(flatten)]
    pub identity: IdentityConfig,

    /// Shared-state engine settings.
    #[command(flatten)]
    pub engine: EngineConfig,

    /// A task other than serving (e.g. `backup`).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Limits that protect the server and other players.
    #[command(flatten)]
    pub limits: Limits,

    /// Browser origins and client addresses.
    #[command(flatten)]
    pub access: Access,

    /// TOML file of channel access rules (who may join and send where); without it every
    /// channel is open to everyone, as with the seed. See docs/SECURITY.md for the format.
    #[arg(long, env = "CHAT_CHANNEL_RULES")]
    pub channel_rules: Option<std::path::PathBuf>,

    /// Word filter: a file with one word or phrase per line (`#` comments); matches in messages
    /// are masked with `*`, names containing one are refused.
    #[arg(long, env = "CHAT_WORD_FILTER")]
    pub word_filter: Option<std::path::PathBuf>,

    /// Bearer token that guards the admin HTTP API (`/admin/...`); the API is off when unset.
    /// At least 16 bytes: an empty or short token is refused at start.
    #[arg(long, env = "CHAT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// How long shutdown waits for connections to close after sending them close frames.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", value_parser = humantime::parse_duration, default_value = "5s")]
    pub shutdown_grace: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Where tokens come from and how they are checked.
#[derive(Debug, Clone, Args)]
pub struct IdentityConfig {
    /// Verify tokens against this external issuer's JWKS (`<url>/.well-known/jwks.json`) instead of
    /// the built-in identity; the built-in login endpoints are then off.
    #[arg(long, env = "CHAT_ISSUER_URL")]
    pub issuer_url: Option<String>,

    /// Issuer URL written into (and required of) the built-in identity's tokens. Defaults to
    /// `http://<listen address>`. Nodes that share a key file must share this value.
    #[arg(long, env = "CHAT_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Turn off the built-in `/login-as-guest` and `/refresh-access-token` endpoints (tokens
    /// signed with the key file are still accepted).
    #[arg(long, env = "CHAT_NO_IDENTITY")]
    pub no_identity: bool,

    /// PEM file of the RSA signing key; created on first start. Give every node the same file so
    /// they accept each other's tokens.
    #[arg(long, env = "CHAT_KEY_FILE", default_value = "data/jwt-key.pem")]
    pub key_file: PathBuf,

    /// PEM file of the previous signing key after a rotation: still accepted and published in the
    /// JWKS, never used to sign.
    #[arg(long, env = "CHAT_PREVIOUS_KEY_FILE")]
    pub previous_key_file: Option<PathBuf>,

    /// File where guest accounts (user id and a hash of the secret) are kept across restarts.
    #[arg(long, env = "CHAT_GUEST_FILE", default_value = "data/guests.jsonl")]
    pub guest_file: PathBuf,

    /// How often the external issuer's JWKS may be fetched again for an unknown key id.
    #[arg(long, env = "CHAT_JWKS_REFETCH_INTERVAL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub jwks_refetch_interval: Duration,
}

/// What `chat-server` does instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Copies the live database (`--database`) to FILE as of one moment, while the server keeps
    /// serving; the copy is checked, then put in place (a failed backup leaves no file).
    /// Restore by stopping the server and putting the copy where `--database` points.
    Backup {
        /// Where the copy goes (replaced if it exists).
        file: std::path::PathBuf,
    },
}

/// Which engine shares channels, names, presence and history.
#[derive(Debug, Clone, Args)]
pub struct EngineConfig {
    /// Engine kind. `sqlite` (the default without Redis): one node, everything it keeps
    /// (history, names, mutes, bans, block lists, guests) in the `--database` file, across
    /// restarts. `memory`: one node, nothing kept across a restart (tests, benchmarks).
    /// `redis`: shared by every node. Giving `--redis-url` or `--redis-cluster` selects `redis`.
    #[arg(long = "engine", env = "CHAT_ENGINE", value_enum)]
    pub kind: Option<EngineKind>,

    /// The `sqlite` engine's database file (created with its directory on first start). One
    /// server per file; take copies of it live with `chat-server backup FILE`.
    #[arg(
        long,
        env = "CHAT_DATABASE",
        default_value = "data/chat.db",
        global = true
    )]
    pub database: std::path::PathBuf,

    /// How hard each commit tries to reach the disk. `normal`: what was acknowledged survives a
    /// crash or kill of the server; a power loss or OS crash can take the last moments.
    /// `full`: every commit is flushed to the disk before it is acknowledged (survives a power
    /// loss; costs an fsync per group of writes).
    #[arg(long, env = "CHAT_DATABASE_SYNC", value_enum, default_value_t = Durability::Normal)]
    pub database_sync: Durability,

    /// Redis URL (e.g. `redis://127.0.0.1:6379`); nodes with the same URL and key prefix share
    /// channels, names, presence and history.
    #[arg(long, env = "REDIS_URL", conflicts_with = "redis_cluster")]
    pub redis_url: Option<String>,

    /// A Redis Cluster (Redis 7+ or Valkey), named by some of its nodes, comma-separated
    /// (`redis://h1:7000,redis://h2:7000`; the rest are discovered). Channel traffic uses
    /// sharded pub/sub. Giving it selects `redis`.
    #[arg(long, env = "REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,

    /// Replicas that must confirm a chat message (Redis `WAIT`) before it is acknowledged; 0
    /// acknowledges once the master has it (a master lost right after may lose it).
    #[arg(long, env = "CHAT_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,

    /// Longest wait for those replicas; past it the sender gets `unavailable` (the message may
    /// still have been delivered and kept).
    #[arg(long, env = "CHAT_REDIS_WAIT_TIMEOUT", value_parser = humantime::parse_duration, default_value = "100ms")]
    pub redis_wait_timeout: Duration,

    /// How long a node holds a chat message before publishing it to Redis, so that the messages
    /// of other players join it in one batch (one round trip, one script call each): at chat
    /// rates this halves the Redis engine's cost per message, at the price of this delay on
    /// every message. `0` publishes each message at once. At most 50ms.
    #[arg(long, env = "CHAT_REDIS_PUBLISH_LINGER", value_parser = humantime::parse_duration, default_value = "1ms")]
    pub redis_publish_linger: Duration,

    /// Prefix of every Redis key and pub/sub channel, so that deployments can share a Redis.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "chat:")]
    pub redis_prefix: String,

    /// Oldest message kept in history (every engine; the `sqlite` and `memory` engines drop
    /// older ones every few seconds).
    #[arg(long, env = "CHAT_HISTORY_MAX_AGE", value_parser = humantime::parse_duration, default_value = "7days")]
    pub history_max_age: Duration,

    /// Messages kept per channel for history and resume.
    #[arg(long, env = "CHAT_HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// Channels whose history the `sqlite` and `memory` engines keep; past it, the channel without members
    /// that was quiet the longest is forgotten (so made-up channel names cannot grow memory).
    #[arg(long, env = "CHAT_MEMORY_MAX_CHANNELS", default_value_t = 10_000)]
    pub memory_max_channels: usize,

    /// Bytes of channel history the `sqlite` and `memory` engines hold in all channels together (`256MiB`,
    /// `1GiB`, `500MB` or plain bytes); past it the oldest messages of any channel are dropped
    /// first, and a client resuming from before them is told `gap: true`.
    #[arg(long, env = "CHAT_MEMORY_HISTORY_BYTES", default_value = "256MiB")]
    pub memory_history_bytes: ByteSize,

    /// Names are unique across users (claimed atomically); a taken name is refused with `name_taken`.
    #[arg(long, env = "CHAT_UNIQUE_NAMES")]
    pub unique_names: bool,
}

/// Engine kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// In-process engine kept in an embedded SQLite database: a single node, durable.
    Sqlite,
    /// In-process engine, nothing kept across restarts: a single node (tests, benchmarks).
    Memory,
    /// Redis pub/sub and streams: many stateless nodes.
    Redis,
}

impl EngineConfig {
    /// The memory engine's history budget in bytes, if it makes sense on this machine.
    pub fn memory_history_budget(&self) -> Result<usize, String> {
        match usize::try_from(self.memory_history_bytes.as_u64()) {
            Ok(0) => Err(
                "--memory-history-bytes must be more than 0 (--history-size 0 keeps no history)"
                    .into(),
            ),
            Ok(bytes) => Ok(bytes),
            Err(_) => Err("--memory-history-bytes is larger than this machine can address".into()),
        }
    }

    /// Where the Redis engine's Redis is: the cluster named, else the URL.
    pub fn redis_target(&self) -> Result<crate::engine::RedisTarget, String> {
        if self.redis_prefix.contains(['{', '}']) {
            return Err(format!(
                "--redis-prefix {:?} holds a brace: braces mark Redis Cluster hash tags, and \
                 would put every key in one slot",
                self.redis_prefix
            ));
        }
        if self.redis_wait_replicas > 0
            && (self.redis_wait_timeout.is_zero()
                || self.redis_wait_timeout >= Duration::from_millis(1500))
        {
            // WAIT 0 blocks for ever, and a wait past the command timeout (2 s) would time the
            // publish out and have it retried: stored and delivered twice.
            return Err(format!(
                "--redis-wait-timeout must be more than 0 and less than 1500ms (got {:?})",
                self.redis_wait_timeout
            ));
        }
        if self.redis_publish_linger > Duration::from_millis(50) {
            return Err(format!(
                "--redis-publish-linger must be at most 50ms: it delays every message (got {:?})",
                self.redis_publish_linger
            ));
        }
        let seeds: Vec<String> = self
            .redis_cluster
            .iter()
            .map(|seed| seed.trim().to_owned())
            .filter(|seed| !seed.is_empty())
            .collect();
        if !seeds.is_empty() {
            return Ok(crate::engine::RedisTarget::Cluster(seeds));
        }
        match &self.redis_url {
            Some(url) => Ok(crate::engine::RedisTarget::Single(url.clone())),
            None => Err(
                "the Redis engine needs --redis-url (or REDIS_URL) or --redis-cluster (or \
                 REDIS_CLUSTER)"
                    .into(),
            ),
        }
    }

    /// The engine to run: the one named, else Redis when a URL or cluster is given, else memory.
    pub fn selected(&self) -> EngineKind {
        self.kind.unwrap_or(
            if self.redis_url.is_some() || !self.redis_cluster.is_empty() {
                EngineKind::Redis
            } else {
                EngineKind::Sqlite
            },
        )
    }
}

/// Limits, each answered with a clear error code (or, for abuse, a close code).
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Longest chat or direct message, in characters (`too_long`).
    #[arg(long, env = "CHAT_MAX_MESSAGE_CHARS", default_value_t = 500)]
    pub max_message_chars: usize,

    /// Longest username, in characters (`bad_name`).
    #[arg(long, env = "CHAT_MAX_NAME_CHARS", default_value_t = 32)]
    pub max_name_chars: usize,

    /// Longest channel name, in characters (`bad_channel`).
    #[arg(long, env = "CHAT_MAX_CHANNEL_CHARS", default_value_t = 64)]
    pub max_channel_chars: usize,

    /// Channels one connection may be in at once (`too_many_channels`).
    #[arg(long, env = "CHAT_MAX_CHANNELS", default_value_t = 32)]
    pub max_channels_per_connection: usize,

    /// Users one user may block (`too_many_blocks`); the list is kept across reconnects.
    #[arg(long, env = "CHAT_MAX_BLOCKS", default_value_t = 1000)]
    pub max_blocks: usize,

    /// Chat and direct messages per second per connection, sustained (`rate_limited` past it).
    #[arg(long, env = "CHAT_MESSAGES_PER_SECOND", default_value_t = 5)]
    pub messages_per_second: u32,

    /// Chat and direct messages a connection may send in a burst.
    #[arg(long, env = "CHAT_MESSAGE_BURST", default_value_t = 10)]
    pub message_burst: u32,

    /// Frames of any kind per second per connection; sustained flooding past this closes the
    /// connection with 1008.
    #[arg(long, env = "CHAT_FRAMES_PER_SECOND", default_value_t = 50)]
    pub frames_per_second: u32,

    /// Frames of any kind a connection may send in a burst before the flood limit applies.
    #[arg(long, env = "CHAT_FRAME_BURST", default_value_t = 200)]
    pub frame_burst: u32,

    /// Largest WebSocket frame or message accepted, in bytes; larger closes with 1009.
    #[arg(long, env = "CHAT_MAX_FRAME_BYTES", default_value_t = 16 * 1024)]
    pub max_frame_bytes: usize,

    /// Frames queued for one connection before it counts as too slow and is closed with 1008.
    #[arg(long, env = "CHAT_OUTGOING_QUEUE", default_value_t = 1024)]
    pub outgoing_queue: usize,

    /// Kernel send buffer of each client socket, in bytes (Linux doubles it for its own
    /// bookkeeping); 0 leaves the kernel's autotuning (up to megabytes). Small enough that a
    /// client that stops reading fills its `--outgoing-queue` and is closed as too slow.
    #[arg(long, env = "CHAT_SOCKET_SEND_BUFFER", default_value_t = 64 * 1024)]
    pub socket_send_buffer: usize,

    /// Largest page of history sent at once (`history` on join, `history` requests).
    #[arg(long, env = "CHAT_MAX_HISTORY_PAGE", default_value_t = 200)]
    pub max_history_page: usize,

    /// Interval of server WebSocket pings.
    #[arg(long, env = "CHAT_PING_INTERVAL", value_parser = humantime::parse_duration, default_value = "20s")]
    pub ping_interval: Duration,

    /// A connection silent (no frame, no pong) for this long is dropped.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,

    /// WebSocket connections open at once from one client address (`too_many_connections`, then
    /// close 1008); 0 for no limit. Behind a proxy, see `--real-ip-header`.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 64)]
    pub max_connections_per_ip: u32,

    /// WebSocket connections open at once for one user on this node (`too_many_connections`,
    /// then close 1008); 0 for no limit.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_USER", default_value_t = 8)]
    pub max_connections_per_user: u32,

    /// TCP connections open at once from one address, counted from accept (before any request
    /// byte) to close, HTTP and WebSocket alike; past it a new connection is closed at once.
    /// 0 for no limit. Not applied with `--real-ip-header`: behind a proxy every connection
    /// comes from the proxy (the WebSocket limit per client address still applies).
    #[arg(long, env = "CHAT_MAX_TCP_CONNECTIONS_PER_IP", default_value_t = 128)]
    pub max_tcp_connections_per_ip: u32,

    /// TCP connections open at once in all; past it a new connection is closed at once.
    /// Default: the open-file limit less headroom for the listener, Redis and files (64 or a
    /// tenth, whichever is more); a larger value is lowered to that, with a warning.
    #[arg(long, env = "CHAT_MAX_OPEN_CONNECTIONS")]
    pub max_open_connections: Option<u32>,

    /// Guest logins and token refreshes per minute from one client address, sustained (HTTP 429
    /// with `Retry-After` past it).
    #[arg(long, env = "CHAT_LOGINS_PER_MINUTE", default_value_t = 30)]
    pub logins_per_minute: u32,

    /// Guest logins and token refreshes one client address may make in a burst.
    #[arg(long, env = "CHAT_LOGIN_BURST", default_value_t = 10)]
    pub login_burst: u32,

    /// Time a client has to send a complete HTTP request head (slow clients are cut off).
    #[arg(long, env = "CHAT_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub header_read_timeout: Duration,

    /// Shortest time between two `typing` announcements of one connection in one channel;
    /// more within it are dropped silently (a `message` to the channel opens the window again).
    /// 0 announces every one.
    #[arg(long, env = "CHAT_TYPING_INTERVAL", value_parser = humantime::parse_duration, default_value = "2s")]
    pub typing_interval: Duration,
}

/// Who may connect: browser origins and the address a request comes from.
#[derive(Debug, Clone, Args)]
pub struct Access {
    /// Browser origins allowed to open a WebSocket (comma-separated or repeated, `*` for any);
    /// empty: any. Requests without an `Origin` header (games, tools) are not browsers and are
    /// let through; a browser from another origin gets HTTP 403.
    #[arg(
        long = "allowed-origin",
        env = "CHAT_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Header carrying the client address set by a trusted reverse proxy (e.g.
    /// `X-Forwarded-For`, whose last entry is used, or `X-Real-IP`). Only set this behind a
    /// proxy that writes it: clients could otherwise choose their own address.
    #[arg(long, env = "CHAT_REAL_IP_HEADER")]
    pub real_ip_header: Option<String>,
}

impl Limits {
    /// Checks the values that would make no sense (or overflow) at run time.
    pub fn validate(&self) -> Result<(), String> {
        let day = Duration::from_secs(86_400);
        if self.ping_interval.is_zero() || self.ping_interval > day {
            return Err("--ping-interval must be between 1ms and 1 day".into());
        }
        if self.idle_timeout.is_zero() || self.idle_timeout > day {
            return Err("--idle-timeout must be between 1ms and 1 day".into());
        }
        if self.header_read_timeout.is_zero() || self.header_read_timeout > day {
            return Err("--header-read-timeout must be between 1ms and 1 day".into());
        }
        if self.typing_interval > day {
            return Err("--typing-interval must be at most 1 day".into());
        }
        if !(1..=10_000).contains(&self.max_history_page) {
            return Err("--max-history-page must be between 1 and 10000".into());
        }
        if self.max_open_connections == Some(0) {
            return Err(
                "--max-open-connections must be at least 1 (leave it unset for the default)".into(),
            );
        }
        if self.outgoing_queue == 0 || self.max_frame_bytes < 1024 {
            return Err("--outgoing-queue must be at least 1 and --max-frame-bytes 1024".into());
        }
        Ok(())
    }
}

/// Shortest admin token accepted: an empty or guessable token would open ban, kick and
/// broadcast to anyone.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

impl Config {
    /// Checks every setting that would make no sense, or open a hole, at run time.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate()?;
        if let Some(token) = &self.admin_token {
            if token.trim().is_empty() {
                return Err(
                    "--admin-token (CHAT_ADMIN_TOKEN) is set but empty: give a secret of \
                     at least 16 bytes, or leave it unset to turn the admin API off"
                        .into(),
                );
            }
            if token.len() < MIN_ADMIN_TOKEN_BYTES {
                return Err(format!(
                    "--admin-token (CHAT_ADMIN_TOKEN) is {} bytes long: use a secret of at least \
                     {MIN_ADMIN_TOKEN_BYTES} bytes (e.g. `openssl rand -hex 32`)",
                    token.len()
                ));
            }
        }
        Ok(())
    }

    /// The defaults with no flags and no environment: for tests and embedding.
    pub fn defaults() -> Self {
        // Parse from an empty command line, ignoring the environment so that an operator's
        // CHAT_* variables cannot leak into an embedded server.
        let mut cmd = <Self as clap::CommandFactory>::command();
        cmd = cmd.mut_args(|arg| arg.env(None::<&str>));
        let matches = cmd
            .try_get_matches_from(["chat-server"])
            .unwrap_or_else(|e| unreachable!("defaults must parse: {e}"));
        <Self as clap::FromArgMatches>::from_arg_matches(&matches)
            .unwrap_or_else(|e| unreachable!("defaults must parse: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::defaults();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.limits.ping_interval, Duration::from_secs(20));
        assert_eq!(c.limits.typing_interval, Duration::from_secs(2));
        assert!(c.admin_token.is_none());
        assert!(c.validate().is_ok());
        assert_eq!(c.engine.memory_history_budget(), Ok(256 * 1024 * 1024));
        <Config as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn an_empty_or_short_admin_token_is_refused() {
        let mut c = Config::defaults();
        for (token, says) in [("", "empty"), ("   ", "empty"), ("s3cret", "6 bytes")] {
            c.admin_token = Some(token.into());
            let error = c.validate().unwrap_err();
            assert!(error.contains(says), "{token:?}: {error}");
        }
        c.admin_token = Some("0123456789abcdef".into());
        assert!(c.validate().is_ok());
    }

    /// The configuration of `chat-server ARGS`, or clap's error.
    fn parse(args: &[&str]) -> Result<Config, String> {
        let program = std::iter::once("chat-server").chain(args.iter().copied());
        <Config as clap::Parser>::try_parse_from(program).map_err(|e| e.to_string())
    }

    #[test]
    fn memory_history_bytes_take_human_sizes_and_refuse_zero() {
        let budget = |value: &str| {
            parse(&["--memory-history-bytes", value])?
                .engine
                .memory_history_budget()
        };
        assert_eq!(budget("64KiB"), Ok(64 * 1024));
        assert_eq!(budget("1 GiB"), Ok(1 << 30));
        assert_eq!(budget("500MB"), Ok(500_000_000));
        assert_eq!(budget("4096"), Ok(4096));
        assert!(budget("0").unwrap_err().contains("more than 0"));
        assert!(budget("lots").is_err());
    }

    #[test]
    fn the_publish_linger_takes_durations_up_to_50ms() {
        let target = |value: &str| {
            let url = "redis://127.0.0.1:6379";
            parse(&["--redis-url", url, "--redis-publish-linger", value])?
                .engine
                .redis_target()
        };
        assert!(target("0").is_ok());
        assert!(target("500us").is_ok());
        assert!(target("50ms").is_ok());
        assert!(target("51ms").unwrap_err().contains("at most 50ms"));
        assert!(target("soon").is_err());
        assert_eq!(
            Config::defaults().engine.redis_publish_linger,
            Duration::from_millis(1)
        );
    }
}
