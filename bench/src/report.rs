//! The result of a run: a serialisable [`BenchResult`] and its human-readable table.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::ScenarioConfig;
use crate::stats::{DeliverySummary, ErrorCounts};

/// End-to-end latency percentiles, µs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples (first arrivals).
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl LatencySummary {
    /// Percentiles of `histogram` (all zero when it is empty).
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// Message and delivery counts (see [`DeliverySummary`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Deliveries {
    /// Messages written to connections.
    pub messages_sent: u64,
    /// Messages acknowledged by the server.
    pub messages_acked: u64,
    /// Messages refused by the server.
    pub messages_rejected: u64,
    /// Deliveries expected (each accepted message × members of its channel).
    pub expected: u64,
    /// Expected deliveries received.
    pub received: u64,
    /// Expected deliveries never received.
    pub lost: u64,
    /// Extra copies received.
    pub duplicated: u64,
    /// Benchmark messages received that were not expected.
    pub unexpected: u64,
}

impl From<DeliverySummary> for Deliveries {
    fn from(s: DeliverySummary) -> Self {
        Self {
            messages_sent: s.sent,
            messages_acked: s.acked,
            messages_rejected: s.rejected,
            expected: s.expected,
            received: s.received,
            lost: s.lost,
            duplicated: s.duplicated,
            unexpected: s.unexpected,
        }
    }
}

/// Server process figures (with `--server-pid`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStats {
    /// The process sampled.
    pub pid: u32,
    /// CPU used during the sending phase, % of one core.
    pub cpu_percent: Option<f64>,
    /// Peak resident memory (`VmHWM`), KiB.
    pub peak_rss_kib: Option<u64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// What was run.
    pub config: ScenarioConfig,
    /// Clients that reached the barrier.
    pub clients_ready: u64,
    /// Time to log in, connect and join every client, s.
    pub setup_secs: f64,
    /// Length of the sending phase, s.
    pub send_secs: f64,
    /// Deliveries received per second, from the barrier to the last delivery.
    pub deliveries_per_second: f64,
    /// End-to-end latency.
    pub latency_us: LatencySummary,
    /// Message and delivery counts.
    pub deliveries: Deliveries,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Server process figures.
    pub server: Option<ServerStats>,
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

impl BenchResult {
    /// The result as a plain-text table.
    pub fn table(&self) -> String {
        let c = &self.config;
        let d = &self.deliveries;
        let l = &self.latency_us;
        let mut rows: Vec<(&str, String)> = vec![
            ("scenario", format!("{:?}", c.kind).to_lowercase()),
            ("target", c.ws_url.clone()),
            (
                "clients ready",
                format!("{} / {}", self.clients_ready, c.clients),
            ),
            ("channels", c.channel_count().to_string()),
            ("rate per sender", format!("{} msg/s", c.rate)),
            ("setup", format!("{:.2} s", self.setup_secs)),
            ("sending phase", format!("{:.2} s", self.send_secs)),
            ("messages sent", d.messages_sent.to_string()),
            ("messages acked", d.messages_acked.to_string()),
            ("messages rejected", d.messages_rejected.to_string()),
            ("deliveries expected", d.expected.to_string()),
            ("deliveries received", d.received.to_string()),
            ("deliveries lost", d.lost.to_string()),
            ("deliveries duplicated", d.duplicated.to_string()),
            ("deliveries unexpected", d.unexpected.to_string()),
            ("deliveries/s", format!("{:.1}", self.deliveries_per_second)),
            ("latency p50", ms(l.p50)),
            ("latency p99", ms(l.p99)),
            ("latency p99.9", ms(l.p999)),
            ("latency max", ms(l.max)),
        ];
        if let Some(server) = &self.server {
            rows.push((
                "server cpu",
                server
                    .cpu_percent
                    .map_or("n/a".into(), |p| format!("{p:.1} % of one core")),
            ));
            rows.push((
                "server peak rss",
                server
                    .peak_rss_kib
                    .map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            ));
        }
        if self.errors.is_empty() {
            rows.push(("errors", "none".into()));
        }
        for (kind, n) in &self.errors {
            rows.push(("error", format!("{kind}: {n}")));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            let _ = writeln!(out, "{key:<width$}  {value}");
        }
        out
    }

    /// The result as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{ScenarioConfig, ScenarioKind};
    use crate::stats::new_histogram;

    #[test]
    fn table_and_json_show_every_figure() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let mut errors = ErrorCounts::new();
        errors.insert("server:rate_limited".into(), 3);
        let result = BenchResult {
            config: ScenarioConfig::defaults(ScenarioKind::Seed, "ws://127.0.0.1:1/").unwrap(),
            clients_ready: 1500,
            setup_secs: 1.0,
            send_secs: 20.0,
            deliveries_per_second: 123.0,
            latency_us: LatencySummary::from_histogram(&h),
            deliveries: Deliveries {
                lost: 7,
                duplicated: 2,
                ..Default::default()
            },
            errors,
            server: Some(ServerStats {
                pid: 1,
                cpu_percent: Some(12.5),
                peak_rss_kib: Some(2048),
            }),
        };
        assert!(result.latency_us.p50 >= 4990 && result.latency_us.p50 <= 5010);
        let table = result.table();
        for needle in [
            "deliveries lost",
            "7",
            "server:rate_limited: 3",
            "12.5 %",
            "2.0 MiB",
        ] {
            assert!(table.contains(needle), "{needle} missing from\n{table}");
        }
        let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
        assert_eq!(json["deliveries"]["lost"], 7);
        assert_eq!(json["deliveries"]["duplicated"], 2);
        assert_eq!(json["errors"]["server:rate_limited"], 3);
        assert_eq!(json["config"]["kind"], "seed");
        assert_eq!(json["server"]["peak_rss_kib"], 2048);
    }
}
