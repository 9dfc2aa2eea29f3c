//! Scenarios and the run itself: guest logins, setup with bounded concurrency, the barrier, (a
//! reconnect storm,) the sending or idle phase, the drain, and the accounting. `ramp` repeats
//! the run at rising rates (see [`crate::ramp`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use hdrhistogram::Histogram;

use crate::client::{ClientOutcome, ClientPlan, ClientShared, Phase, Ready, run_client};
use crate::login::login_guests;
use crate::proc_stats;
use crate::report::{BenchResult, IdleReport, LatencySummary, StormReport};
use crate::stats::{Accounting, ErrorCounts, count_error, new_histogram};
use crate::target::{ensure_loopback, login_url_for};

/// Which traffic shape to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Many clients spread over many channels, every client sending.
    Seed,
    /// One channel with many members and a few senders.
    Fanout,
    /// `seed` traffic at rising rates until p99 passes a bound: the highest rate held.
    Ramp,
    /// Many connected, joined, silent clients: server memory per connection.
    Idle,
    /// `seed` clients all drop their connections and reconnect at once, then send.
    ReconnectStorm,
    /// Guest logins and token refreshes over HTTP, as fast as the server answers (see
    /// [`crate::login_scenario`]).
    Login,
}

impl ScenarioKind {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::Fanout => "fanout",
            Self::Ramp => "ramp",
            Self::Idle => "idle",
            Self::ReconnectStorm => "reconnect-storm",
            Self::Login => "login",
        }
    }
}

/// Where clients get their tokens.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// Log in as a new guest per client at this base URL (`GET {url}/login-as-guest`).
    LoginUrl(String),
    /// Use these tokens, reused in turn when there are fewer than clients.
    #[serde(serialize_with = "count_only")]
    Tokens(Vec<Arc<str>>),
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn count_only<S: serde::Serializer>(tokens: &[Arc<str>], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{} tokens", tokens.len()))
}

/// A complete run description.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioConfig {
    /// Traffic shape.
    pub kind: ScenarioKind,
    /// WebSocket URLs of the server's nodes (loopback only), without the token; client `i`
    /// connects to `ws_urls[i % len]`.
    pub ws_urls: Vec<String>,
    /// How clients authenticate.
    pub auth: Auth,
    /// Guests to log in with [`Auth::LoginUrl`] (tokens are reused in turn); `None`: one per
    /// client. `login`: the most logins of the whole run; `None`: as many as `duration` allows.
    pub logins: Option<usize>,
    /// `login`: refreshes after each login, each with the refresh token just received.
    pub refreshes_per_login: usize,
    /// Connect from this many loopback addresses, 127.0.0.1 upwards (more than 1 passes the
    /// ~28,000 ports one source address has towards one server port).
    pub source_addresses: usize,
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
    /// Server processes to sample CPU and memory of (nodes, Redis).
    pub server_pids: Vec<u32>,
    /// `ramp`: rate multiplier from one step to the next.
    pub ramp_factor: f64,
    /// `ramp`: most steps to run.
    pub ramp_steps: usize,
    /// `ramp`: a step holds while its p99 latency stays within this.
    #[serde(serialize_with = "as_secs")]
    pub p99_bound: Duration,
    /// Show a progress bar (on stderr, when it is a terminal).
    #[serde(skip)]
    pub progress: bool,
}

impl ScenarioConfig {
    /// A configuration with the defaults of `kind` for a server at `ws_url` (guest logins on the
    /// same host and port).
    pub fn defaults(kind: ScenarioKind, ws_url: &str) -> Result<Self, String> {
        let (clients, channels, senders) = match kind {
            ScenarioKind::Seed | ScenarioKind::Ramp | ScenarioKind::ReconnectStorm => {
                (1500, 100, 1500)
            }
            ScenarioKind::Fanout => (1000, 1, 1),
            ScenarioKind::Idle => (10_000, 100, 0),
            ScenarioKind::Login => (64, 1, 0),
        };
        let (duration, logins) = match kind {
            ScenarioKind::Ramp | ScenarioKind::ReconnectStorm | ScenarioKind::Login => (10, None),
            // Longer than the server's ping interval (20 s), so pings are part of the figure.
            ScenarioKind::Idle => (30, Some(100)),
            _ => (20, None),
        };
        Ok(Self {
            kind,
            ws_urls: vec![ws_url.to_owned()],
            auth: Auth::LoginUrl(login_url_for(ws_url)?),
            logins,
            refreshes_per_login: 1,
            source_addresses: 1,
            clients,
            channels,
            senders,
            rate: 1.0,
            duration: Duration::from_secs(duration),
            drain: Duration::from_secs(5),
            connect_concurrency: 100,
            setup_timeout: Duration::from_secs(120),
            server_pids: Vec::new(),
            ramp_factor: 1.5,
            ramp_steps: 10,
            p99_bound: Duration::from_millis(5),
            progress: false,
        })
    }

    /// Checks the numbers and that every URL is a loopback address.
    pub fn validate(&self) -> Result<(), String> {
        if self.ws_urls.is_empty() {
            return Err("no --ws-url given".into());
        }
        for url in &self.ws_urls {
            ensure_loopback(url)?;
        }
        match &self.auth {
            Auth::LoginUrl(url) => ensure_loopback(url)?,
            Auth::Tokens(tokens) if tokens.is_empty() => return Err("no tokens given".into()),
            Auth::Tokens(_) => {}
        }
        if self.clients == 0 || self.clients > u32::MAX as usize {
            return Err("--clients must be at least 1".into());
        }
        if self.channels == 0 {
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
        if self.logins == Some(0) {
            return Err("--logins must be at least 1".into());
        }
        if !(1..=254).contains(&self.source_addresses) {
            return Err("--source-addresses must be between 1 and 254".into());
        }
        if self.source_addresses > 1 && self.ws_urls.iter().any(|u| !u.starts_with("ws://")) {
            return Err("--source-addresses needs ws:// URLs".into());
        }
        if self.kind == ScenarioKind::Login {
            if matches!(self.auth, Auth::Tokens(_)) {
                return Err("login logs guests in itself: --tokens-file cannot be used".into());
            }
            if self.clients > crate::login_scenario::MAX_WORKERS {
                return Err(format!(
                    "login: --clients (workers) must be at most {}",
                    crate::login_scenario::MAX_WORKERS
                ));
            }
        }
        if self.kind == ScenarioKind::Ramp
            && !(self.ramp_factor.is_finite() && self.ramp_factor > 1.0 && self.ramp_steps > 0)
        {
            return Err("--ramp-factor must be above 1 and --ramp-steps at least 1".into());
        }
        Ok(())
    }

    /// Channels actually used.
    pub fn channel_count(&self) -> usize {
        match self.kind {
            ScenarioKind::Fanout => 1,
            _ => self.channels.min(self.clients),
        }
    }

    /// Clients that send.
    pub fn sender_count(&self) -> usize {
        match self.kind {
            ScenarioKind::Fanout => self.senders,
            ScenarioKind::Idle | ScenarioKind::Login => 0,
            _ => self.clients,
        }
    }

    /// Guest logins a run needs (0 with tokens given).
    pub fn login_count(&self) -> usize {
        match self.auth {
            Auth::LoginUrl(_) => self.logins.unwrap_or(self.clients).min(self.clients),
            Auth::Tokens(_) => 0,
        }
    }

    /// Every client's plan, given the tokens to use in turn; `run_id` makes the channel names
    /// unique to this run.
    pub fn plans(&self, run_id: &str, tokens: &[Arc<str>]) -> Vec<ClientPlan> {
        let channels = self.channel_count();
        let senders = self.sender_count();
        let period = Duration::from_secs_f64(1.0 / self.rate);
        (0..self.clients)
            .map(|i| {
                let channel_index = i % channels;
                ClientPlan {
                    index: i as u32,
                    channel_index,
                    channel: format!("bench-{run_id}-{channel_index}"),
                    sender: i < senders,
                    first_send_offset: period.mul_f64(i as f64 / senders.max(1) as f64),
                    token: tokens[i % tokens.len()].clone(),
                    ws_url: self.ws_urls[i % self.ws_urls.len()].clone(),
                    source: (self.source_addresses > 1 || self.kind == ScenarioKind::Idle)
                        .then(|| IpAddr::from([127, 0, 0, 1 + (i % self.source_addresses) as u8])),
                }
            })
            .collect()
    }

    /// The tokens of a run: the given ones, or new guest logins.
    pub async fn tokens(&self) -> Result<Vec<Arc<str>>, String> {
        match &self.auth {
            Auth::Tokens(tokens) => Ok(tokens.clone()),
            Auth::LoginUrl(url) => {
                login_guests(url, self.login_count(), self.connect_concurrency).await
            }
        }
    }
}

/// Runs the scenario against the server and returns the full result.
pub async fn run(config: &ScenarioConfig) -> Result<BenchResult, String> {
    config.validate()?;
    match config.kind {
        ScenarioKind::Ramp => return crate::ramp::run_ramp(config).await,
        ScenarioKind::Login => return crate::login_scenario::run_login(config).await,
        _ => {}
    }
    let progress = new_progress(config.progress, config.clients as u64);
    progress.set_message("logging in");
    let tokens = config.tokens().await?;
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
            & 0xffff_ffff_ffff
    );
    let plans = config.plans(&run_id, &tokens);
    progress.set_message("connecting");
    let rss_before = proc_stats::total(&config.server_pids, proc_stats::current_rss_kib);

    let shared = Arc::new(ClientShared {
        period: Duration::from_secs_f64(1.0 / config.rate),
        duration: config.duration,
        connect_limit: Semaphore::new(config.connect_concurrency),
        setup_deadline: Instant::now() + config.setup_timeout,
        storm: config.kind == ScenarioKind::ReconnectStorm,
        reconnect_timeout: config.setup_timeout,
        live: Default::default(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
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
    let first = collect_ready(&mut ready_rx, plans.len(), config, &progress).await;
    let setup_time = setup_started.elapsed();
    let (members, ready_count, storm) = if shared.storm {
        progress.set_message("storm");
        progress.set_position(0);
        let storm_started = Instant::now();
        let _ = phase_tx.send(Phase::Storm);
        let second = collect_ready(&mut ready_rx, first.ready as usize, config, &progress).await;
        let report = StormReport {
            dropped: first.ready,
            reconnected: second.ready,
            storm_secs: second.last_at.map_or(0.0, |t| {
                t.saturating_duration_since(storm_started).as_secs_f64()
            }),
            reconnect_us: LatencySummary::from_histogram(&second.reconnect),
        };
        (second.members, second.ready, Some(report))
    } else {
        (first.members, first.ready, None)
    };
    let members = Arc::new(members);

    let mut cpu = proc_stats::CpuWatch::start(&config.server_pids);
    let start = Instant::now();
    let _ = phase_tx.send(Phase::Send {
        start,
        members: members.clone(),
    });
    progress.set_message(if config.kind == ScenarioKind::Idle {
        "idle"
    } else {
        "sending"
    });
    let live = &shared.live;
    let errors_before_hold = live.errors.load(Ordering::Relaxed);
    let send_end = start + config.duration;
    while Instant::now() < send_end {
        tokio::time::sleep_until((Instant::now() + Duration::from_millis(100)).min(send_end)).await;
        show(&progress, live);
    }
    let send_wall = start.elapsed();
    cpu.stop(send_wall);
    let idle = (config.kind == ScenarioKind::Idle).then(|| {
        let dropped = live.errors.load(Ordering::Relaxed) - errors_before_hold;
        let connections = ready_count.saturating_sub(dropped);
        let rss_connected = proc_stats::total(&config.server_pids, proc_stats::current_rss_kib);
        IdleReport {
            connections,
            dropped,
            source_addresses: config.source_addresses,
            rss_before_kib: rss_before,
            rss_connected_kib: rss_connected,
            kib_per_connection: match (rss_before, rss_connected) {
                (Some(b), Some(a)) if connections > 0 => {
                    Some(a.saturating_sub(b) as f64 / connections as f64)
                }
                _ => None,
            },
        }
    });

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
        server: cpu.stats(),
        idle,
        storm,
        ramp: None,
        login: None,
    })
}

/// What one barrier round collected.
struct Round {
    /// Clients joined.
    ready: u64,
    /// Members per channel.
    members: Vec<u64>,
    /// Reconnect times (storm round).
    reconnect: Histogram<u64>,
    /// When the last client joined.
    last_at: Option<Instant>,
}

/// Waits for `expected` reports (every client reports once per round, ready or failed).
async fn collect_ready(
    ready_rx: &mut mpsc::UnboundedReceiver<Ready>,
    expected: usize,
    config: &ScenarioConfig,
    progress: &ProgressBar,
) -> Round {
    let mut round = Round {
        ready: 0,
        members: vec![0; config.channel_count()],
        reconnect: new_histogram(),
        last_at: None,
    };
    let mut reported = 0;
    while reported < expected {
        let Some(report) = ready_rx.recv().await else {
            break;
        };
        reported += 1;
        if let Some(channel) = report.channel {
            round.ready += 1;
            round.members[channel] += 1;
            round.last_at = Some(Instant::now());
        }
        if let Some(took) = report.reconnect {
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            round.reconnect.saturating_record(us.max(1));
        }
        progress.set_position(reported as u64);
    }
    round
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
