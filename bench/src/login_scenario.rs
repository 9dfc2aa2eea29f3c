//! The `login` scenario: the HTTP identity endpoints under load, as at a game's launch.
//!
//! `--clients` workers each run a closed loop for `--duration`: log in a new guest
//! (`GET /login-as-guest`), then refresh its tokens `--refreshes-per-login` times
//! (`GET /refresh-access-token?refresh_token=...`, each time with the refresh token just
//! received). Every reply is checked (status 200, the tokens in the JSON body). The report gives
//! logins and refreshes per second, their latency, errors by endpoint and status, and the
//! server's CPU, also per request. `--logins` caps the logins of the whole run.
//!
//! Each worker is a thread with its own keep-alive HTTP connection, so a request never waits
//! for the load generator, only for the server. The server limits logins and refreshes per
//! client address (`--logins-per-minute`, `--login-burst`): every worker comes from 127.0.0.1,
//! so raise them (scripts/bench.sh does) or the run measures 429s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use protocol::{LoginResponse, RefreshResponse};
use serde::Serialize;

use crate::proc_stats;
use crate::report::{BenchResult, Deliveries, LatencySummary};
use crate::scenario::{Auth, ScenarioConfig};
use crate::stats::{ErrorCounts, count_error, new_histogram};

/// How long one login or refresh may take before it counts as a `timeout` error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most workers (threads) one run may start.
pub const MAX_WORKERS: usize = 4096;
/// Stack of a worker thread: it only parses small JSON replies.
const WORKER_STACK: usize = 256 * 1024;

/// What the `login` scenario measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoginReport {
    /// Workers running logins at the same time.
    pub workers: usize,
    /// Refreshes each worker made after each login.
    pub refreshes_per_login: usize,
    /// From the start to the last worker done, s.
    pub wall_secs: f64,
    /// Successful logins.
    pub logins: u64,
    /// Successful refreshes.
    pub refreshes: u64,
    /// Successful logins per second.
    pub logins_per_second: f64,
    /// Successful refreshes per second.
    pub refreshes_per_second: f64,
    /// Latency of successful logins, µs.
    pub login_us: LatencySummary,
    /// Latency of successful refreshes, µs.
    pub refresh_us: LatencySummary,
    /// Server CPU time per successful request (login or refresh, two signatures each), ms: all
    /// `--server-pid` processes together; `None` without them.
    pub server_cpu_ms_per_request: Option<f64>,
}

/// Shared by the workers: when to stop, and the login budget.
struct Plan {
    login_url: String,
    refresh_url: String,
    refreshes_per_login: usize,
    deadline: Instant,
    /// Logins still allowed (`--logins`), `usize::MAX` when unbounded.
    budget: AtomicUsize,
}

impl Plan {
    /// Takes one login from the budget; `false` when it is spent or the time is up.
    fn next_login(&self) -> bool {
        Instant::now() < self.deadline
            && self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// What one worker saw.
struct WorkerOutcome {
    logins: Histogram<u64>,
    refreshes: Histogram<u64>,
    errors: ErrorCounts,
}

/// Runs the `login` scenario (see the module documentation).
pub async fn run_login(config: &ScenarioConfig) -> Result<BenchResult, String> {
    config.validate()?;
    let Auth::LoginUrl(base) = &config.auth else {
        return Err("login logs guests in itself: --tokens-file cannot be used".into());
    };
    let base = base.trim_end_matches('/');
    let plan = Arc::new(Plan {
        login_url: format!("{base}/login-as-guest"),
        refresh_url: format!("{base}/refresh-access-token"),
        refreshes_per_login: config.refreshes_per_login,
        deadline: Instant::now() + config.duration,
        budget: AtomicUsize::new(config.logins.unwrap_or(usize::MAX)),
    });
    let mut cpu = proc_stats::CpuWatch::start(&config.server_pids);
    let start = Instant::now();
    let workers = config.clients;
    let worker_plan = plan.clone();
    let outcomes = tokio::task::spawn_blocking(move || run_workers(&worker_plan, workers))
        .await
        .map_err(|e| format!("login workers failed: {e}"))??;
    let wall = start.elapsed();
    cpu.stop(wall);

    let mut logins = new_histogram();
    let mut refreshes = new_histogram();
    let mut errors = ErrorCounts::new();
    for outcome in outcomes {
        logins.add(&outcome.logins).map_err(|e| e.to_string())?;
        refreshes
            .add(&outcome.refreshes)
            .map_err(|e| e.to_string())?;
        for (kind, n) in outcome.errors {
            count_error(&mut errors, kind, n);
        }
    }
    let requests = logins.len() + refreshes.len();
    // All sampled processes together; none sampled: unknown.
    let server = cpu.stats();
    let cpu_percent: Option<f64> = if server.is_empty() {
        None
    } else {
        server.iter().map(|s| s.cpu_percent).sum()
    };
    let per_second = |n: u64| n as f64 / wall.as_secs_f64().max(1e-9);
    let report = LoginReport {
        workers,
        refreshes_per_login: config.refreshes_per_login,
        wall_secs: wall.as_secs_f64(),
        logins: logins.len(),
        refreshes: refreshes.len(),
        logins_per_second: per_second(logins.len()),
        refreshes_per_second: per_second(refreshes.len()),
        login_us: LatencySummary::from_histogram(&logins),
        refresh_us: LatencySummary::from_histogram(&refreshes),
        server_cpu_ms_per_request: cpu_percent
            .filter(|_| requests > 0)
            .map(|p| p / 100.0 * wall.as_secs_f64() * 1000.0 / requests as f64),
    };
    Ok(BenchResult {
        config: config.clone(),
        clients_ready: workers as u64,
        setup_secs: 0.0,
        send_secs: wall.as_secs_f64(),
        deliveries_per_second: 0.0,
        latency_us: report.login_us.clone(),
        deliveries: Deliveries::default(),
        errors,
        server,
        idle: None,
        storm: None,
        ramp: None,
        login: Some(report),
    })
}

/// Starts `workers` threads and waits for them all.
fn run_workers(plan: &Arc<Plan>, workers: usize) -> Result<Vec<WorkerOutcome>, String> {
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let worker_plan = plan.clone();
        let handle = std::thread::Builder::new()
            .name(format!("login-{i}"))
            .stack_size(WORKER_STACK)
            .spawn(move || worker(&worker_plan));
        match handle {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                // Stop the ones started, then report.
                plan.budget.store(0, Ordering::Relaxed);
                for handle in handles {
                    let _ = handle.join();
                }
                return Err(format!("cannot start login worker {i}: {e}"));
            }
        }
    }
    Ok(handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| {
                let mut errors = ErrorCounts::new();
                count_error(&mut errors, "worker_panicked", 1);
                WorkerOutcome {
                    logins: new_histogram(),
                    refreshes: new_histogram(),
                    errors,
                }
            })
        })
        .collect())
}

/// One worker's closed loop: login, refreshes, until the time or the login budget is spent.
fn worker(plan: &Plan) -> WorkerOutcome {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut outcome = WorkerOutcome {
        logins: new_histogram(),
        refreshes: new_histogram(),
        errors: ErrorCounts::new(),
    };
    while plan.next_login() {
        let started = Instant::now();
        let mut refresh_token = match get::<LoginResponse>(&agent, &plan.login_url) {
            Ok(reply) => {
                record(&mut outcome.logins, started.elapsed());
                reply.refresh_token
            }
            Err(kind) => {
                count_error(&mut outcome.errors, format!("login:{kind}"), 1);
                continue;
            }
        };
        for _ in 0..plan.refreshes_per_login {
            if Instant::now() >= plan.deadline {
                break;
            }
            let url = format!(
                "{}?{}",
                plan.refresh_url,
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("refresh_token", &refresh_token)
                    .finish()
            );
            let started = Instant::now();
            match get::<RefreshResponse>(&agent, &url) {
                Ok(reply) => {
                    record(&mut outcome.refreshes, started.elapsed());
                    refresh_token = reply.refresh_token;
                }
                Err(kind) => {
                    count_error(&mut outcome.errors, format!("refresh:{kind}"), 1);
                    break;
                }
            }
        }
    }
    outcome
}

fn record(histogram: &mut Histogram<u64>, took: Duration) {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(us.max(1));
}

/// `GET url`, expecting 200 and a JSON body of type `T` with non-empty tokens; the error is a
/// short kind for the report (`http_429`, `timeout`, `connect`, `bad_reply`, ...).
fn get<T: serde::de::DeserializeOwned + Tokens>(
    agent: &ureq::Agent,
    url: &str,
) -> Result<T, String> {
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => "timeout".to_owned(),
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            "connect".to_owned()
        }
        other => format!("transport ({other})"),
    })?;
    let status = response.status().as_u16();
    if status != 200 {
        // Read the body so that the connection can be reused.
        let _ = response.body_mut().read_to_string();
        return Err(format!("http_{status}"));
    }
    let reply: T = response
        .body_mut()
        .read_json()
        .map_err(|_| "bad_reply".to_owned())?;
    if reply.complete() {
        Ok(reply)
    } else {
        Err("bad_reply".to_owned())
    }
}

/// A reply carrying tokens.
trait Tokens {
    /// Whether both tokens are there.
    fn complete(&self) -> bool;
}

impl Tokens for LoginResponse {
    fn complete(&self) -> bool {
        !self.auth_token.is_empty() && !self.refresh_token.is_empty()
    }
}

impl Tokens for RefreshResponse {
    fn complete(&self) -> bool {
        !self.auth_token.is_empty() && !self.refresh_token.is_empty()
    }
}
