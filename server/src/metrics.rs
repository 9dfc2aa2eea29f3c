//! Prometheus metrics, one registry per server instance (so tests can run many servers).

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use protocol::ErrorCode;

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

/// The server's counters and gauges.
pub struct Metrics {
    registry: Registry,
    /// WebSocket connections open now.
    pub connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_total: Counter,
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
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chat");
        let connections = Gauge::default();
        let connections_total = Counter::default();
        let frames_in = Counter::default();
        let frames_out = Counter::default();
        let messages_published = Counter::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let closes = Family::<ReasonLabel, Counter>::default();
        let queue_drops = Counter::default();
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
        Self {
            registry,
            connections,
            connections_total,
            frames_in,
            frames_out,
            messages_published,
            errors,
            closes,
            queue_drops,
        }
    }

    /// Counts one error reply.
    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.as_str(),
            })
            .inc();
    }

    /// Counts one server-side close.
    pub fn close(&self, reason: &'static str) {
        self.closes.get_or_create(&ReasonLabel { reason }).inc();
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
