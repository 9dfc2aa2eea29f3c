//! Scenarios (`seed`, `fanout`) and the run itself: setup with bounded concurrency, the barrier,
//! the sending phase, the drain, and the accounting.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::client::{ClientOutcome, ClientPlan, ClientShared, Credentials, Phase, run_client};
use crate::proc_stats;
use crate::report::{BenchResult, LatencySummary, ServerStats};
use crate::stats::{Accounting, ErrorCounts, count_error};
use crate::target::{ensure_loopback, login_url_for};

/// Which traffic shape to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioKind {
    /// Many clients spread over many channels, every client sending.
    Seed,
    /// One channel with many members and a few senders.
    Fanout,
}

/// Where clients get their tokens.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// Log in as a new guest per client at this base URL (`GET {url}/login-as-guest`).
    LoginUrl(String),
    /// Use these tokens, reused in turn when there are fewer than clients.
    #[serde(serialize_with = "count_only")]
    Tokens(Vec<String>),
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn count_only<S: serde::Serializer>(tokens: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{} tokens", tokens.len()))
}

/// A complete run description.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioConfig {
    /// Traffic shape.
    pub kind: ScenarioKind,
    /// WebSocket URL of the server (loopback only), without the token.
    pub ws_url: String,
    /// How clients authenticate.
    pub auth: Auth,
    /// Number of clients.
    pub clients: usize,
    /// Number of channels (`seed`; `fanout` always uses one).
    pub channels: usize,
    /// Number of sending clients (`fanout`; in `seed` every client sends).
    pub senders: usize,
    /// Messages per second per sender.
    pub rate: f64,
    /// Length of the sending phase.
    #[serde(serialize_with = "as_secs")]
    pub duration: Duration,
    /// How long to wait after sending for outstanding deliveries.
    #[serde(serialize_with = "as_secs")]
    pub drain: Duration,
    /// Clients logging in and connecting at once.
    pub connect_concurrency: usize,
    /// How long setup (all logins, connects and joins) may take.
    #[serde(serialize_with = "as_secs")]
    pub setup_timeout: Duration,
    /// Server process to sample CPU and memory of.
    pub server_pid: Option<u32>,
    /// Show a progress bar (on stderr, when it is a terminal).
    #[serde(skip)]
    pub progress: bool,
}

impl ScenarioConfig {
    /// A configuration with the defaults of `kind` for a server at `ws_url` (guest logins on the
    /// same host and port).
    pub fn defaults(kind: ScenarioKind, ws_url: &str) -> Result<Self, String> {
        let (clients, channels, senders) = match kind {
            ScenarioKind::Seed => (1500, 100, 1500),
            ScenarioKind::Fanout => (1000, 1, 1),
        };
        Ok(Self {
            kind,
            ws_url: ws_url.to_owned(),
            auth: Auth::LoginUrl(login_url_for(ws_url)?),
            clients,
            channels,
            senders,
            rate: 1.0,
            duration: Duration::from_secs(20),
            drain: Duration::from_secs(5),
            connect_concurrency: 100,
            setup_timeout: Duration::from_secs(120),
            server_pid: None,
            progress: false,
        })
    }

    /// Checks the numbers and that every URL is a loopback address.
    pub fn validate(&self) -> Result<(), String> {
        ensure_loopback(&self.ws_url)?;
        match &self.auth {
            Auth::LoginUrl(url) => ensure_loopback(url)?,
            Auth::Tokens(tokens) if tokens.is_empty() => return Err("no tokens given".into()),
            Auth::Tokens(_) => {}
        }
        if self.clients == 0 || self.clients > u32::MAX as usize {
            return Err("--clients must be at least 1".into());
        }
        if self.kind == ScenarioKind::Seed && self.channels == 0 {
            return Err("--channels must be at least 1".into());
        }
        if self.kind == ScenarioKind::Fanout && !(1..=self.clients).contains(&self.senders) {
            return Err("--senders must be between 1 and --clients".into());
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err("--rate must be a positive number".into());
        }
        if self.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        Ok(())
    }

    /// Channels actually used.
    pub fn channel_count(&self) -> usize {
        match self.kind {
            ScenarioKind::Seed => self.channels.min(self.clients),
            ScenarioKind::Fanout => 1,
        }
    }

    /// Every client's plan; `run_id` makes the channel names unique to this run.
    pub fn plans(&self, run_id: &str) -> Vec<ClientPlan> {
        let channels = self.channel_count();
        let senders = match self.kind {
            ScenarioKind::Seed => self.clients,
            ScenarioKind::Fanout => self.senders,
        };
        let period = Duration::from_secs_f64(1.0 / self.rate);
        (0..self.clients)
            .map(|i| {
                let channel_index = i % channels;
                let credentials = match &self.auth {
                    Auth::LoginUrl(url) => Credentials::Login(url.clone()),
                    Auth::Tokens(tokens) => Credentials::Token(tokens[i % tokens.len()].clone()),
                };
                ClientPlan {
                    index: i as u32,
                    channel_index,
                    channel: format!("bench-{run_id}-{channel_index}"),
                    sender: i < senders,
                    first_send_offset: period.mul_f64(i as f64 / senders as f64),
                    credentials,
                }
            })
            .collect()
    }
}

/// Runs the scenario against the server and returns the full result.
pub async fn run(config: &ScenarioConfig) -> Result<BenchResult, String> {
    config.validate()?;
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
            & 0xffff_ffff_ffff
    );
    let plans = config.plans(&run_id);
    let progress = new_progress(config.progress, plans.len() as u64);
    progress.set_message("connecting");

    let shared = Arc::new(ClientShared {
        ws_url: config.ws_url.clone(),
        period: Duration::from_secs_f64(1.0 / config.rate),
        duration: config.duration,
        connect_limit: Semaphore::new(config.connect_concurrency),
        setup_deadline: Instant::now() + config.setup_timeout,
        live: Default::default(),
        agent: ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut members = vec![0u64; config.channel_count()];
    let tasks: Vec<_> = plans
        .iter()
        .cloned()
        .map(|plan| {
            let shared = shared.clone();
            let ready = ready_tx.clone();
            let phase = phase_rx.clone();
            tokio::spawn(run_client(plan, shared, ready, phase))
        })
        .collect();
    drop(ready_tx);
    let setup_started = Instant::now();

    // Barrier: every client reports ready or failed (each gives up by the setup deadline).
    let mut reported = 0;
    let mut ready_count = 0;
    while let Some(joined) = ready_rx.recv().await {
        reported += 1;
        if let Some(channel) = joined {
            ready_count += 1;
            members[channel] += 1;
        }
        progress.set_position(reported);
        if reported == plans.len() as u64 {
            break;
        }
    }
    let setup_time = setup_started.elapsed();
    let members = Arc::new(members);

    let cpu_before = config.server_pid.and_then(proc_stats::cpu_sample);
    let start = Instant::now();
    let _ = phase_tx.send(Phase::Send {
        start,
        members: members.clone(),
    });
    progress.set_message("sending");
    let live = &shared.live;
    let send_end = start + config.duration;
    while Instant::now() < send_end {
        tokio::time::sleep_until((Instant::now() + Duration::from_millis(100)).min(send_end)).await;
        show(&progress, live);
    }
    let send_wall = start.elapsed();
    let cpu_after = config.server_pid.and_then(proc_stats::cpu_sample);

    progress.set_message("draining");
    let drain_end = Instant::now() + config.drain;
    // Let in-flight sends finish before trusting the counters.
    tokio::time::sleep(Duration::from_millis(100).min(config.drain)).await;
    while Instant::now() < drain_end {
        show(&progress, live);
        if live.received.load(Ordering::Relaxed) >= live.expected.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep_until((Instant::now() + Duration::from_millis(50)).min(drain_end)).await;
    }
    let _ = phase_tx.send(Phase::Stop);
    progress.set_message("closing");

    let mut accounting = Accounting::new((*members).clone());
    let mut errors = ErrorCounts::new();
    let mut last_receipt: Option<Instant> = None;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(outcome)) => {
                last_receipt = last_receipt.max(outcome.last_receipt);
                merge(&mut accounting, &mut errors, outcome);
            }
            Ok(Err(_)) => count_error(&mut errors, "client_panicked", 1),
            Err(_) => count_error(&mut errors, "close_timeout", 1),
        }
    }
    progress.finish_and_clear();

    let deliveries = accounting.summary();
    let delivery_wall = last_receipt.map_or(send_wall, |t| t.saturating_duration_since(start));
    let server = config.server_pid.map(|pid| ServerStats {
        pid,
        cpu_percent: match (cpu_before, cpu_after) {
            (Some(b), Some(a)) => Some(proc_stats::cpu_percent(
                b,
                a,
                proc_stats::clock_ticks_per_second(),
                send_wall,
            )),
            _ => None,
        },
        peak_rss_kib: proc_stats::peak_rss_kib(pid),
    });
    Ok(BenchResult {
        config: config.clone(),
        clients_ready: ready_count,
        setup_secs: setup_time.as_secs_f64(),
        send_secs: send_wall.as_secs_f64(),
        deliveries_per_second: if delivery_wall.is_zero() {
            0.0
        } else {
            deliveries.received as f64 / delivery_wall.as_secs_f64()
        },
        latency_us: LatencySummary::from_histogram(accounting.histogram()),
        deliveries: deliveries.into(),
        errors,
        server,
    })
}

fn merge(accounting: &mut Accounting, errors: &mut ErrorCounts, outcome: ClientOutcome) {
    for (kind, n) in outcome.errors {
        count_error(errors, kind, n);
    }
    accounting.add_sender(outcome.sender);
    if outcome.ready {
        accounting.add_receiver(outcome.receiver);
    }
}

fn new_progress(enabled: bool, clients: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(clients);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {msg:10} {wide_bar} {pos}/{len}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn show(progress: &ProgressBar, live: &crate::client::LiveCounters) {
    progress.set_length(live.expected.load(Ordering::Relaxed).max(1));
    progress.set_position(live.received.load(Ordering::Relaxed));
}
