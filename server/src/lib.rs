//! bevy chat server: a seed-compatible WebSocket chat server (axum + tokio).
//!
//! Embed it (tests, the desktop playtest) with [`Server::bind`] and [`Server::run`], or run the
//! `chat-server` binary. See `docs/PROTOCOL.md` for the wire protocol.
//!
//! ```no_run
//! # async fn demo() -> Result<(), server::ServerError> {
//! let mut config = server::config::Config::defaults();
//! config.listen = "127.0.0.1:0".parse().unwrap();
//! let server = server::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(std::future::pending()).await
//! # }
//! ```

pub mod accept;
pub mod admin;
pub mod app;
pub mod commands;
pub mod config;
pub mod directory;
pub mod engine;
pub mod error;
pub mod guard;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod moderation;
pub mod node;
pub mod policy;
mod serve;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::AcceptLimits;
use crate::app::AppState;
use crate::config::{Config, EngineKind};
use crate::engine::sqlite::{Database, HistoryCaps, Journal, Snapshot, SqliteGuestStore};
use crate::engine::{
    Engine, EngineError, MemoryAudit, MemoryEngine, MemoryModeration, MemoryUsers, RedisEngine,
    RedisSettings, now_ms, sweep_every,
};
use crate::hub::Hub;
use crate::identity::guests::GuestStore;
use crate::identity::{Identity, IdentityError};
use crate::metrics::Metrics;
use crate::moderation::{Moderator, WordFilter};
use crate::node::Node;
use crate::policy::{ChannelPolicy, ChannelRules, OpenChannels};

/// Why the server could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or serving the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The engine could not start (e.g. Redis unreachable).
    #[error("engine: {0}")]
    Engine(String),
    /// Identity set-up failed (key file, guest file, issuer).
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// The channel rules file could not be read or parsed.
    #[error("channel rules: {0}")]
    ChannelRules(String),
    /// A setting is out of range, or a file it names cannot be read.
    #[error("configuration: {0}")]
    Config(String),
}

/// A game's own checks, plugged into the server (see [`Server::bind_with`]).
#[derive(Clone, Default)]
pub struct Hooks {
    /// Decides who may join and send where; replaces `--channel-rules` when set.
    pub channel_policy: Option<Arc<dyn ChannelPolicy>>,
    /// Reviews messages and names; replaces `--word-filter` when set.
    pub moderator: Option<Arc<dyn Moderator>>,
}

/// A bound, not yet serving, chat server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    admission: AcceptLimits,
}

impl Server {
    /// Binds the listener and prepares identity and engine.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        Self::bind_with(config, Hooks::default()).await
    }

    /// [`bind`](Self::bind) with a game's own checks (`hooks`).
    pub async fn bind_with(mut config: Config, hooks: Hooks) -> Result<Self, ServerError> {
        let channels: Arc<dyn ChannelPolicy> = match (hooks.channel_policy, &config.channel_rules) {
            (Some(policy), _) => policy,
            (None, Some(path)) => {
                Arc::new(ChannelRules::load(path).map_err(ServerError::ChannelRules)?)
            }
            (None, None) => Arc::new(OpenChannels),
        };
        let moderator: Arc<dyn Moderator> = match (hooks.moderator, &config.word_filter) {
            (Some(moderator), _) => moderator,
            (None, Some(path)) => Arc::new(WordFilter::load(path).map_err(ServerError::Config)?),
            (None, None) => Arc::new(WordFilter::default()),
        };
        config.validate().map_err(ServerError::Config)?;
        let history_budget = config
            .engine
            .memory_history_budget()
            .map_err(ServerError::Config)?;
        let listen = config.listen;
        let listen_error = |source| ServerError::Listen {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
        config.listen = listener.local_addr().map_err(listen_error)?;
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(config.limits.outgoing_queue, metrics.clone()));
        let mut shared_guests: Option<Arc<dyn GuestStore>> = None;
        let engine = match config.engine.selected() {
            kind @ (EngineKind::Memory | EngineKind::Sqlite) => {
                let database = match kind {
                    EngineKind::Sqlite => Some(open_database(&config).await?),
                    _ => None,
                };
                let journal = database.as_ref().map(|(journal, _, _)| journal.clone());
                let mut users = MemoryUsers::new();
                let mut moderation = MemoryModeration::new(hub.clone());
                let mut audit = MemoryAudit::new();
                if let Some(journal) = &journal {
                    users = users.with_journal(journal.clone());
                    moderation = moderation.with_journal(journal.clone());
                    audit = audit.with_journal(journal.clone());
                }
                let users = Arc::new(users);
                let mut channels =
                    MemoryEngine::new(hub.clone(), config.engine.history_size, users.clone())
                        .with_max_channels(config.engine.memory_max_channels)
                        .with_history_bytes(history_budget)
                        .with_max_age(config.engine.history_max_age)
                        .with_metrics(metrics.clone());
                if let Some(journal) = journal {
                    channels = channels.with_journal(journal);
                }
                if let Some((_, held, guests)) = database {
                    channels.restore(held.channels);
                    users.restore(held.names, held.name_history);
                    moderation.restore(held.standings, held.blocks, held.blocks_version);
                    audit.restore(held.audit);
                    shared_guests = Some(guests);
                }
                let channels = Arc::new(channels);
                tokio::spawn(sweep_every(Arc::downgrade(&channels), SWEEP_PERIOD));
                Engine {
                    broker: channels.clone(),
                    presence: channels,
                    users,
                    moderation: Arc::new(moderation),
                    audit: Arc::new(audit),
                }
            }
            EngineKind::Redis => {
                let target = config.engine.redis_target().map_err(ServerError::Engine)?;
                let settings = RedisSettings {
                    target,
                    prefix: config.engine.redis_prefix.clone(),
                    history_size: config.engine.history_size,
                    history_max_age: config.engine.history_max_age,
                    wait_replicas: config.engine.redis_wait_replicas,
                    wait_timeout: config.engine.redis_wait_timeout,
                    publish_linger: config.engine.redis_publish_linger,
                };
                let engine =
                    RedisEngine::connect(settings, hub.clone())
                        .await
                        .map_err(|e| match e {
                            EngineError::Unavailable(detail) => {
                                ServerError::Engine(format!("cannot use Redis: {detail}"))
                            }
                            other => ServerError::Engine(other.to_string()),
                        })?;
                shared_guests = Some(Arc::new(engine.guest_store()));
                Engine::of(Arc::new(engine))
            }
        };
        let identity = Arc::new(
            Identity::from_config_with_guests(&config.identity, config.listen, shared_guests)
                .await?,
        );
        let node = Arc::new(Node {
            engine,
            hub,
            metrics,
            limits: config.limits.clone(),
            unique_names: config.engine.unique_names,
            channels,
            moderator,
        });
        tokio::spawn(crate::node::report_every(
            Arc::downgrade(&node),
            crate::node::REPORT_PERIOD,
        ));
        let guard = Arc::new(crate::guard::Guard::new(&config.limits, &config.access));
        let admission = admission(&config, &node.metrics);
        let state = AppState {
            node,
            guard,
            identity,
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        Ok(Self {
            listener,
            state,
            admission,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.state.config.listen
    }

    /// Serves until `shutdown` resolves, then closes every WebSocket with 1001 and waits up to
    /// the configured grace period for them to finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Self {
            listener,
            state,
            admission,
        } = self;
        let addr = state.config.listen;
        let token = state.shutdown.clone();
        let router = app::router(state.clone());
        tracing::info!(%addr, "bevy chat server listening");
        let serving = serve::serve(
            listener,
            router,
            &state.config.limits,
            admission,
            state.node.metrics.clone(),
            token.clone(),
            state.tasks.clone(),
        );
        tokio::select! {
            () = serving => {}
            () = shutdown => {
                tracing::info!("shutting down: closing connections");
                token.cancel();
            }
        }
        state.shutdown.cancel();
        state.tasks.close();
        if tokio::time::timeout(state.config.shutdown_grace, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period; exiting anyway");
        }
        Ok(())
    }
}

/// How often the in-process engine drops history past its age cap and queues its trims to the
/// database.
const SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the `sqlite` engine's database (refusing a damaged or unwritable one), imports the
/// guest file of an earlier version once, and hands back the journal, what the file held, and
/// the guest store on it.
async fn open_database(
    config: &Config,
) -> Result<(Journal, Snapshot, Arc<dyn GuestStore>), ServerError> {
    let path = config.engine.database.clone();
    let durability = config.engine.database_sync;
    let caps = HistoryCaps {
        per_channel: config.engine.history_size,
        oldest_ms: now_ms().saturating_sub(
            u64::try_from(config.engine.history_max_age.as_millis()).unwrap_or(u64::MAX),
        ),
    };
    let database = tokio::task::spawn_blocking(move || Database::open(&path, durability, caps))
        .await
        .map_err(|e| ServerError::Engine(format!("the database task failed: {e}")))?
        .map_err(ServerError::Engine)?;
    let Database {
        journal,
        mut snapshot,
    } = database;
    let mut guests = SqliteGuestStore::new(
        journal.clone(),
        std::mem::take(&mut snapshot.guests),
        snapshot.guests_imported_from.take(),
    );
    if !config.identity.no_identity {
        guests
            .import_once(&config.identity.guest_file)
            .await
            .map_err(|e| ServerError::Engine(format!("importing the guest file: {e}")))?;
    }
    Ok((journal, snapshot, Arc::new(guests)))
}

/// The limits on open TCP connections: per address unless a proxy's header names the client
/// (then every connection comes from the proxy, and counting them per address would lock out
/// everyone at once), and in all below the open-file limit.
fn admission(config: &Config, metrics: &Metrics) -> AcceptLimits {
    let limits = &config.limits;
    let per_ip = if config.access.real_ip_header.is_some() {
        None
    } else {
        Some(limits.max_tcp_connections_per_ip)
    };
    let open_files = accept::open_file_limit();
    let max_open = accept::open_connection_cap(limits.max_open_connections, open_files);
    tracing::info!(
        open_file_limit = open_files,
        max_open_connections = max_open,
        max_tcp_connections_per_ip = per_ip.filter(|&n| n != 0),
        "open TCP connection limits"
    );
    AcceptLimits::new(per_ip, max_open, metrics.tcp_connections.clone())
}
