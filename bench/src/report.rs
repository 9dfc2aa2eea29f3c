//! The result of a run: a serialisable [`BenchResult`] and its human-readable table.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::login_scenario::LoginReport;
use crate::scenario::{ScenarioConfig, ScenarioKind};
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
    /// Server process figures, one per `--server-pid`.
    pub server: Vec<ServerStats>,
    /// `idle`: memory per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleReport>,
    /// `reconnect-storm`: how the reconnects went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm: Option<StormReport>,
    /// `ramp`: every step, and the highest rate held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampReport>,
    /// `login`: logins and refreshes per second and their latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginReport>,
}

/// What the `idle` scenario measured: the server's resident memory before any client connected
/// and with every connection open (after the hold, so pings and their buffers are included).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleReport {
    /// Connections open at the end of the hold.
    pub connections: u64,
    /// Connections that ended during the hold.
    pub dropped: u64,
    /// Loopback source addresses used.
    pub source_addresses: usize,
    /// Server `VmRSS` before the first connection, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server `VmRSS` with every connection open, KiB.
    pub rss_connected_kib: Option<u64>,
    /// (connected − before) / connections, KiB.
    pub kib_per_connection: Option<f64>,
}

/// What the `reconnect-storm` scenario measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormReport {
    /// Clients that dropped their connection.
    pub dropped: u64,
    /// Clients connected and joined again.
    pub reconnected: u64,
    /// From the storm to the last client joined again, s.
    pub storm_secs: f64,
    /// Per client, from dropping to joined again (connect + name + join), µs.
    pub reconnect_us: LatencySummary,
}

/// One step of the `ramp` scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RampStep {
    /// Messages per second per client.
    pub rate_per_client: f64,
    /// Messages per second offered in total.
    pub messages_per_second: f64,
    /// Deliveries received per second.
    pub deliveries_per_second: f64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Deliveries lost.
    pub lost: u64,
    /// Errors of any kind (refused messages included).
    pub errors: u64,
    /// CPU of every `--server-pid` process together, % of one core.
    pub server_cpu_percent: Option<f64>,
    /// Whether the step held: p99 within the bound, nothing lost, no errors.
    pub held: bool,
}

/// What the `ramp` scenario measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RampReport {
    /// The p99 bound a step must stay within, µs.
    pub p99_bound_us: u64,
    /// Every step run, in order (the last one failed unless the steps ran out).
    pub steps: Vec<RampStep>,
    /// The highest total message rate held, msg/s (`None` when the first step failed).
    pub highest_held_messages_per_second: Option<f64>,
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

impl BenchResult {
    /// The result as a plain-text table.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut rows: Vec<(&str, String)> = if c.kind == ScenarioKind::Login {
            // No WebSocket clients: the login rows below say it all.
            vec![
                ("scenario", c.kind.name().to_owned()),
                ("target", c.ws_urls.join(", ")),
            ]
        } else {
            self.message_rows()
        };
        for server in &self.server {
            rows.push((
                "server cpu",
                format!(
                    "{} (pid {})",
                    server
                        .cpu_percent
                        .map_or("n/a".into(), |p| format!("{p:.1} % of one core")),
                    server.pid
                ),
            ));
            rows.push((
                "server peak rss",
                format!(
                    "{} (pid {})",
                    server
                        .peak_rss_kib
                        .map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                    server.pid
                ),
            ));
        }
        self.scenario_rows(&mut rows);
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

    /// The rows of the WebSocket scenarios: clients, messages, deliveries, latency.
    fn message_rows(&self) -> Vec<(&'static str, String)> {
        let c = &self.config;
        let d = &self.deliveries;
        let l = &self.latency_us;
        vec![
            ("scenario", c.kind.name().to_owned()),
            ("target", c.ws_urls.join(", ")),
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
        ]
    }

    /// Rows of the scenario-specific reports.
    fn scenario_rows(&self, rows: &mut Vec<(&str, String)>) {
        let kib =
            |k: Option<u64>| k.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        if let Some(idle) = &self.idle {
            rows.push(("idle connections", idle.connections.to_string()));
            rows.push(("dropped while idle", idle.dropped.to_string()));
            rows.push(("source addresses", idle.source_addresses.to_string()));
            rows.push(("server rss before", kib(idle.rss_before_kib)));
            rows.push(("server rss connected", kib(idle.rss_connected_kib)));
            rows.push((
                "server rss/connection",
                idle.kib_per_connection
                    .map_or("n/a".into(), |k| format!("{k:.2} KiB")),
            ));
        }
        if let Some(storm) = &self.storm {
            let r = &storm.reconnect_us;
            rows.push(("storm dropped", storm.dropped.to_string()));
            rows.push(("storm reconnected", storm.reconnected.to_string()));
            rows.push(("storm duration", format!("{:.3} s", storm.storm_secs)));
            rows.push(("reconnect p50", ms(r.p50)));
            rows.push(("reconnect p99", ms(r.p99)));
            rows.push(("reconnect max", ms(r.max)));
        }
        if let Some(login) = &self.login {
            login_rows(login, rows);
        }
        if let Some(ramp) = &self.ramp {
            rows.push(("p99 bound", ms(ramp.p99_bound_us)));
            for step in &ramp.steps {
                rows.push((
                    "ramp step",
                    format!(
                        "{:>8.0} msg/s  {:>10.0} deliveries/s  p99 {:>10}  lost {}  errors {}  cpu {}  {}",
                        step.messages_per_second,
                        step.deliveries_per_second,
                        ms(step.p99_us),
                        step.lost,
                        step.errors,
                        step.server_cpu_percent
                            .map_or("n/a".into(), |p| format!("{p:.1} %")),
                        if step.held { "held" } else { "FAILED" }
                    ),
                ));
            }
            rows.push((
                "highest rate held",
                ramp.highest_held_messages_per_second
                    .map_or("none".into(), |r| format!("{r:.0} msg/s")),
            ));
        }
    }

    /// Whether nothing went wrong: no loss, refusal, duplicate or error, and p99 within `bound_us`.
    pub fn clean_within(&self, bound_us: u64) -> bool {
        let d = &self.deliveries;
        d.lost == 0
            && d.messages_rejected == 0
            && d.duplicated == 0
            && self.errors.is_empty()
            && self.latency_us.p99 <= bound_us
    }

    /// The result as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The rows of the `login` scenario.
fn login_rows(login: &LoginReport, rows: &mut Vec<(&str, String)>) {
    let (a, r) = (&login.login_us, &login.refresh_us);
    rows.push(("workers", login.workers.to_string()));
    rows.push(("refreshes per login", login.refreshes_per_login.to_string()));
    rows.push(("duration", format!("{:.2} s", login.wall_secs)));
    rows.push(("logins", login.logins.to_string()));
    rows.push(("logins/s", format!("{:.1}", login.logins_per_second)));
    rows.push(("login p50", ms(a.p50)));
    rows.push(("login p99", ms(a.p99)));
    rows.push(("login max", ms(a.max)));
    rows.push(("refreshes", login.refreshes.to_string()));
    rows.push(("refreshes/s", format!("{:.1}", login.refreshes_per_second)));
    rows.push(("refresh p50", ms(r.p50)));
    rows.push(("refresh p99", ms(r.p99)));
    rows.push(("refresh max", ms(r.max)));
    rows.push((
        "server cpu/request",
        login
            .server_cpu_ms_per_request
            .map_or("n/a".into(), |ms| format!("{ms:.3} ms")),
    ));
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
            server: vec![ServerStats {
                pid: 1,
                cpu_percent: Some(12.5),
                peak_rss_kib: Some(2048),
            }],
            idle: None,
            storm: None,
            ramp: Some(RampReport {
                p99_bound_us: 5000,
                steps: vec![RampStep {
                    rate_per_client: 1.0,
                    messages_per_second: 1500.0,
                    deliveries_per_second: 22500.0,
                    p99_us: 6000,
                    lost: 0,
                    errors: 0,
                    server_cpu_percent: None,
                    held: false,
                }],
                highest_held_messages_per_second: None,
            }),
            login: None,
        };
        assert!(!result.clean_within(u64::MAX), "7 lost is not clean");
        assert!(result.latency_us.p50 >= 4990 && result.latency_us.p50 <= 5010);
        let table = result.table();
        for needle in [
            "deliveries lost",
            "7",
            "server:rate_limited: 3",
            "12.5 %",
            "2.0 MiB",
            "FAILED",
        ] {
            assert!(table.contains(needle), "{needle} missing from\n{table}");
        }
        let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
        assert_eq!(json["deliveries"]["lost"], 7);
        assert_eq!(json["deliveries"]["duplicated"], 2);
        assert_eq!(json["errors"]["server:rate_limited"], 3);
        assert_eq!(json["config"]["kind"], "seed");
        assert_eq!(json["server"][0]["peak_rss_kib"], 2048);
        assert_eq!(json["ramp"]["steps"][0]["held"], false);
        assert!(json.get("idle").is_none());
    }
}
