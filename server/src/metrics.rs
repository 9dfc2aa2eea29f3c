//! Prometheus metrics, one registry per server instance (so tests can run many servers).

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use protocol::ErrorCode;
use serde::{Deserialize, Serialize};

/// Label of error counters: the wire error code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabel {
    /// The error code.
    pub code: &'static str,
}

/// Label of close counters: why the server closed a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short reason (`slow_consumer`, `flooding`, `idle`, `too_large`, `shutdown`, ...).
    pub reason: &'static str,
}

/// Label of limit counters: which limit was hit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitLabel {
    /// The limit (see [`Limit`]).
    pub limit: &'static str,
}

/// Every limit the server enforces, as counted in `chat_limit_hits_total{limit=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--messages-per-second`/`--message-burst` (`rate_limited`).
    MessageRate,
    /// `--max-message-chars` (`too_long`).
    MessageSize,
    /// `--frames-per-second`/`--frame-burst` (close 1008, flooding).
    FrameRate,
    /// `--max-frame-bytes` (close 1009).
    FrameSize,
    /// `--max-channels` (`too_many_channels`).
    ChannelsPerConnection,
    /// `--max-connections-per-ip` (`too_many_connections`).
    ConnectionsPerIp,
    /// `--max-connections-per-user` (`too_many_connections`).
    ConnectionsPerUser,
    /// `--logins-per-minute`/`--login-burst` (HTTP 429).
    LoginRate,
    /// `--allowed-origin` (HTTP 403).
    Origin,
    /// `--header-read-timeout` (connection closed).
    HeaderTimeout,
    /// `--outgoing-queue` (close 1008, slow consumer).
    OutgoingQueue,
    /// `--idle-timeout` (close 1008).
    IdleTimeout,
    /// `--max-tcp-connections-per-ip` (the TCP connection is closed at accept).
    TcpConnectionsPerIp,
    /// `--max-open-connections` (the TCP connection is closed at accept).
    OpenConnections,
    /// `--memory-history-bytes`: one kept message dropped from memory-engine history (a
    /// resuming client sees `gap: true`).
    HistoryBytes,
    /// `--typing-interval`: a `typing` within the window of the previous one, dropped silently.
    TypingRate,
    /// `--max-blocks` (`too_many_blocks`).
    Blocks,
    /// Admin API requests per address (HTTP 429).
    AdminRate,
}

impl Limit {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MessageRate => "message_rate",
            Limit::MessageSize => "message_size",
            Limit::FrameRate => "frame_rate",
            Limit::FrameSize => "frame_size",
            Limit::ChannelsPerConnection => "channels_per_connection",
            Limit::ConnectionsPerIp => "connections_per_ip",
            Limit::ConnectionsPerUser => "connections_per_user",
            Limit::LoginRate => "login_rate",
            Limit::Origin => "origin",
            Limit::HeaderTimeout => "header_timeout",
            Limit::OutgoingQueue => "outgoing_queue",
            Limit::IdleTimeout => "idle_timeout",
            Limit::TcpConnectionsPerIp => "tcp_connections_per_ip",
            Limit::OpenConnections => "open_connections",
            Limit::HistoryBytes => "history_bytes",
            Limit::TypingRate => "typing_rate",
            Limit::Blocks => "blocks",
            Limit::AdminRate => "admin_rate",
        }
    }
}

/// The server's counters and gauges.
pub struct Metrics {
    registry: Registry,
    /// WebSocket connections open now.
    pub connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_total: Counter,
    /// TCP connections open now (HTTP and WebSocket), from accept to close.
    pub tcp_connections: Gauge,
    /// Client frames received.
    pub frames_in: Counter,
    /// Frames sent to clients.
    pub frames_out: Counter,
    /// Channel messages published by this node.
    pub messages_published: Counter,
    /// Error replies sent, by code.
    pub errors: Family<CodeLabel, Counter>,
    /// Connections closed by the server, by reason.
    pub closes: Family<ReasonLabel, Counter>,
    /// Connections dropped because their outgoing queue was full.
    pub queue_drops: Counter,
    /// Requests and connections refused or cut off by a limit, by limit.
    pub limit_hits: Family<LimitLabel, Counter>,
    /// Approximate bytes of channel history the memory engine holds (see
    /// `--memory-history-bytes`).
    pub memory_history_bytes: Gauge,
    /// Every label counted so far in `errors`, `closes` and `limit_hits` (the families cannot
    /// be listed), for [`refusals`](Metrics::refusals).
    labels: Mutex<Labels>,
}

#[derive(Default)]
struct Labels {
    errors: BTreeSet<&'static str>,
    closes: BTreeSet<&'static str>,
    limits: BTreeSet<&'static str>,
}

/// The count of each of `labels` in `family`.
fn counts<L>(
    family: &Family<L, Counter>,
    labels: &BTreeSet<&'static str>,
    label: impl Fn(&'static str) -> L,
) -> BTreeMap<String, u64>
where
    L: Clone + std::hash::Hash + Eq,
{
    labels
        .iter()
        .map(|&name| (name.to_owned(), family.get_or_create(&label(name)).get()))
        .collect()
}

/// Errors, closes and limit hits so far, by label (the console's refusals).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusals {
    /// Error replies by code.
    pub errors: BTreeMap<String, u64>,
    /// Server-side closes by reason.
    pub closes: BTreeMap<String, u64>,
    /// Limit hits by limit.
    pub limits: BTreeMap<String, u64>,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chat");
        let connections = Gauge::default();
        let connections_total = Counter::default();
        let tcp_connections = Gauge::default();
        let frames_in = Counter::default();
        let frames_out = Counter::default();
        let messages_published = Counter::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let closes = Family::<ReasonLabel, Counter>::default();
        let queue_drops = Counter::default();
        let limit_hits = Family::<LimitLabel, Counter>::default();
        let memory_history_bytes = Gauge::default();
        registry.register(
            "limit_hits",
            "Requests and connections refused or cut off by a limit, by limit",
            limit_hits.clone(),
        );
        registry.register(
            "connections",
            "WebSocket connections open now",
            connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "WebSocket connections accepted since start",
            connections_total.clone(),
        );
        registry.register(
            "tcp_connections",
            "TCP connections open now (HTTP and WebSocket), from accept to close",
            tcp_connections.clone(),
        );
        registry.register("frames_in", "Client frames received", frames_in.clone());
        registry.register("frames_out", "Frames sent to clients", frames_out.clone());
        registry.register(
            "messages_published",
            "Channel messages published by this node",
            messages_published.clone(),
        );
        registry.register("errors", "Error replies sent, by code", errors.clone());
        registry.register(
            "closes",
            "Connections closed by the server, by reason",
            closes.clone(),
        );
        registry.register(
            "queue_drops",
            "Connections dropped because their outgoing queue was full",
            queue_drops.clone(),
        );
        registry.register(
            "memory_history_bytes",
            "Approximate bytes of channel history the memory engine holds",
            memory_history_bytes.clone(),
        );
        Self {
            registry,
            connections,
            connections_total,
            tcp_connections,
            frames_in,
            frames_out,
            messages_published,
            errors,
            closes,
            queue_drops,
            limit_hits,
            memory_history_bytes,
            labels: Mutex::default(),
        }
    }

    /// Errors, closes and limit hits counted so far, by label.
    pub fn refusals(&self) -> Refusals {
        let labels = self.labels.lock();
        Refusals {
            errors: counts(&self.errors, &labels.errors, |code| CodeLabel { code }),
            closes: counts(&self.closes, &labels.closes, |reason| ReasonLabel {
                reason,
            }),
            limits: counts(&self.limit_hits, &labels.limits, |limit| LimitLabel {
                limit,
            }),
        }
    }

    /// Counts one error reply (and the limit behind it, if any).
    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.as_str(),
            })
            .inc();
        self.labels.lock().errors.insert(code.as_str());
        let limit = match code {
            ErrorCode::RateLimited => Limit::MessageRate,
            ErrorCode::TooLong => Limit::MessageSize,
            ErrorCode::TooManyChannels => Limit::ChannelsPerConnection,
            ErrorCode::TooManyBlocks => Limit::Blocks,
            _ => return,
        };
        self.limit(limit);
    }

    /// Counts one server-side close (the limit behind it, if any, is counted by the caller
    /// with [`limit`](Self::limit): see `CloseReason::limit`).
    pub fn close(&self, reason: &'static str) {
        self.closes.get_or_create(&ReasonLabel { reason }).inc();
        self.labels.lock().closes.insert(reason);
    }

    /// Counts one hit of `limit`.
    pub fn limit(&self, limit: Limit) {
        self.limit_hits
            .get_or_create(&LimitLabel {
                limit: limit.as_str(),
            })
            .inc();
        self.labels.lock().limits.insert(limit.as_str());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
