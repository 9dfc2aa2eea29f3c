//! Command-line interface: arguments and their translation into a [`ScenarioConfig`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::scenario::{Auth, ScenarioConfig, ScenarioKind};

/// Load generator for chat servers speaking the bevy chat protocol (part 1).
///
/// Only loopback targets (localhost, 127.0.0.0/8, ::1) are accepted.
#[derive(Debug, Parser)]
#[command(name = "chat-bench", version)]
pub struct Cli {
    /// Scenario to run (may also be given with --scenario).
    #[arg(value_enum, conflicts_with = "scenario_flag")]
    pub scenario: Option<ScenarioKind>,

    /// Scenario to run: seed (N clients over C channels, all sending), fanout (one channel, S
    /// senders), ramp (seed at rising rates), idle (connected, silent clients: server memory per
    /// connection), reconnect-storm (all drop and reconnect at once, then seed) or login (N
    /// workers logging guests in and refreshing their tokens over HTTP). Default: seed.
    #[arg(long = "scenario", value_enum, id = "scenario_flag")]
    pub scenario_flag: Option<ScenarioKind>,

    /// WebSocket URL of the server (the token is appended as ?auth_token=). Several (repeated or
    /// comma-separated) spread the clients over the nodes of a cluster in turn.
    #[arg(
        long,
        env = "CHAT_BENCH_WS_URL",
        default_value = "ws://127.0.0.1:8080/",
        value_delimiter = ','
    )]
    pub ws_url: Vec<String>,

    /// Base URL for guest logins (GET {url}/login-as-guest). Default: the host and port of the
    /// first --ws-url over http.
    #[arg(long, env = "CHAT_BENCH_LOGIN_URL", conflicts_with = "tokens_file")]
    pub login_url: Option<String>,

    /// File with one access token per line, used instead of guest logins (reused in turn when
    /// there are fewer tokens than clients).
    #[arg(long, env = "CHAT_BENCH_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Guests to log in (their tokens are shared by the clients in turn). Default: one per
    /// client; 100 for idle. login: the most logins of the whole run (default: no cap, the
    /// duration ends it).
    #[arg(long)]
    pub logins: Option<usize>,

    /// login: token refreshes after each login, each with the refresh token just received.
    #[arg(long, default_value_t = 1)]
    pub refreshes_per_login: usize,

    /// Number of clients (login: workers logging in at the same time). Default: 1500 (seed,
    /// ramp, reconnect-storm), 1000 (fanout), 10000 (idle), 64 (login).
    #[arg(long, short = 'n')]
    pub clients: Option<usize>,

    /// Connect from this many loopback source addresses (127.0.0.1, .2, ...): one address has
    /// only ~28,000 ports towards one server port. Default: enough for --clients.
    #[arg(long)]
    pub source_addresses: Option<usize>,

    /// Number of channels (seed).
    #[arg(long, short = 'c', default_value_t = 100)]
    pub channels: usize,

    /// Number of sending clients (fanout; in seed every client sends).
    #[arg(long, short = 's', default_value_t = 1)]
    pub senders: usize,

    /// Messages per second per sender.
    #[arg(long, short = 'r', default_value_t = 1.0)]
    pub rate: f64,

    /// Length of the sending phase (idle: of the hold; ramp: of each step; login: of the
    /// logins), seconds. Default: 20 (seed, fanout), 10 (ramp, reconnect-storm, login), 30
    /// (idle).
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,

    /// ramp: multiply the rate by this from one step to the next.
    #[arg(long, default_value_t = 1.5)]
    pub ramp_factor: f64,

    /// ramp: most steps to run.
    #[arg(long, default_value_t = 10)]
    pub ramp_steps: usize,

    /// ramp: a step holds while its p99 latency stays within this many milliseconds.
    #[arg(long, default_value_t = 5.0)]
    pub p99_bound_ms: f64,

    /// Time to wait for outstanding deliveries after sending, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,

    /// Clients logging in and connecting at the same time.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,

    /// Time all clients may take to log in, connect and join, seconds.
    #[arg(long, default_value_t = 120.0)]
    pub setup_timeout: f64,

    /// Server process id: report its CPU use during sending and its peak RSS (Linux /proc).
    /// Repeat (or comma-separate) for every node of a cluster, and for Redis to see its share.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,

    /// Write the full result as JSON to this file (`-` for stdout; the table then goes to
    /// stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Do not show the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("--{name}: not a valid duration"))
}

impl Cli {
    /// The scenario chosen (positional or flag), seed by default.
    pub fn kind(&self) -> ScenarioKind {
        self.scenario
            .or(self.scenario_flag)
            .unwrap_or(ScenarioKind::Seed)
    }

    /// The run these arguments describe (tokens files are read here).
    pub fn to_config(&self) -> Result<ScenarioConfig, String> {
        let first_url = self.ws_url.first().ok_or("no --ws-url given")?;
        let mut config = ScenarioConfig::defaults(self.kind(), first_url)?;
        config.ws_urls.clone_from(&self.ws_url);
        if let Some(url) = &self.login_url {
            config.auth = Auth::LoginUrl(url.trim_end_matches('/').to_owned());
        }
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--tokens-file {}: {e}", path.display()))?;
            let tokens: Vec<_> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Arc::from)
                .collect();
            if tokens.is_empty() {
                return Err(format!("--tokens-file {}: no tokens", path.display()));
            }
            config.auth = Auth::Tokens(tokens);
        }
        if let Some(clients) = self.clients {
            config.clients = clients;
        }
        if self.logins.is_some() {
            config.logins = self.logins;
        }
        config.refreshes_per_login = self.refreshes_per_login;
        // ~28,000 ephemeral ports per source address; stay well below.
        config.source_addresses = self
            .source_addresses
            .unwrap_or(config.clients.div_ceil(25_000).max(1));
        match config.kind {
            ScenarioKind::Fanout => config.senders = self.senders,
            _ => config.channels = self.channels,
        }
        config.rate = self.rate;
        if let Some(duration) = self.duration {
            config.duration = seconds("duration", duration)?;
        }
        config.ramp_factor = self.ramp_factor;
        config.ramp_steps = self.ramp_steps;
        config.p99_bound = seconds("p99-bound-ms", self.p99_bound_ms / 1000.0)?;
        config.drain = seconds("drain", self.drain)?;
        config.setup_timeout = seconds("setup-timeout", self.setup_timeout)?;
        config.connect_concurrency = self.connect_concurrency;
        config.server_pids.clone_from(&self.server_pid);
        config.progress = !self.no_progress;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ScenarioConfig, String> {
        let mut argv = vec!["chat-bench"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .to_config()
    }

    #[test]
    fn defaults_per_scenario() {
        let seed = parse(&[]).unwrap();
        assert_eq!(seed.kind, ScenarioKind::Seed);
        assert_eq!((seed.clients, seed.channels), (1500, 100));
        assert_eq!(seed.duration, Duration::from_secs(20));
        assert_eq!(seed.drain, Duration::from_secs(5));
        assert!(matches!(&seed.auth, Auth::LoginUrl(u) if u == "http://127.0.0.1:8080"));
        let fanout = parse(&["fanout", "--senders", "3"]).unwrap();
        assert_eq!((fanout.clients, fanout.senders), (1000, 3));
        assert_eq!(fanout.channel_count(), 1);
        let flag = parse(&["--scenario", "fanout"]).unwrap();
        assert_eq!(flag.kind, ScenarioKind::Fanout);
        let idle = parse(&["idle", "-n", "60000"]).unwrap();
        assert_eq!((idle.sender_count(), idle.login_count()), (0, 100));
        assert_eq!(idle.source_addresses, 3);
        assert_eq!(idle.duration, Duration::from_secs(30));
        let storm = parse(&["reconnect-storm"]).unwrap();
        assert_eq!(storm.kind, ScenarioKind::ReconnectStorm);
        assert_eq!((storm.sender_count(), storm.login_count()), (1500, 1500));
        let login = parse(&["login", "--refreshes-per-login", "3", "--logins", "500"]).unwrap();
        assert_eq!((login.kind, login.clients), (ScenarioKind::Login, 64));
        assert_eq!((login.refreshes_per_login, login.logins), (3, Some(500)));
        assert_eq!((login.sender_count(), login.duration.as_secs()), (0, 10));
        let ramp = parse(&["ramp", "--p99-bound-ms", "2.5", "--ramp-factor", "2"]).unwrap();
        assert_eq!(ramp.p99_bound, Duration::from_micros(2500));
        assert_eq!((ramp.ramp_factor, ramp.duration.as_secs()), (2.0, 10));
    }

    #[test]
    fn non_loopback_targets_are_refused() {
        let err = parse(&["--ws-url", "ws://192.0.2.1:8080/"]).unwrap_err();
        assert!(err.contains("not a loopback"), "{err}");
        let err = parse(&["--login-url", "http://example.com"]).unwrap_err();
        assert!(err.contains("not a loopback"), "{err}");
    }

    #[test]
    fn tokens_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "a\n\n b \n").unwrap();
        let config = parse(&["--tokens-file", path.to_str().unwrap(), "-n", "3"]).unwrap();
        let Auth::Tokens(tokens) = &config.auth else {
            panic!("tokens expected")
        };
        assert_eq!(tokens.iter().map(|t| &**t).collect::<Vec<_>>(), ["a", "b"]);
        let plans = config.plans("x", tokens);
        assert_eq!(plans.len(), 3);
        assert_eq!(&*plans[2].token, "a");
        let err = parse(&["login", "--tokens-file", path.to_str().unwrap()]).unwrap_err();
        assert!(err.contains("--tokens-file"), "{err}");
    }

    #[test]
    fn clients_are_spread_over_nodes_and_source_addresses() {
        let config = parse(&[
            "--ws-url",
            "ws://127.0.0.1:1/,ws://127.0.0.1:2/",
            "-n",
            "4",
            "--source-addresses",
            "2",
        ])
        .unwrap();
        let tokens = [Arc::from("t")];
        let plans = config.plans("x", &tokens);
        let urls: Vec<_> = plans.iter().map(|p| p.ws_url.as_str()).collect();
        assert_eq!(urls[..2], ["ws://127.0.0.1:1/", "ws://127.0.0.1:2/"]);
        assert_eq!(plans[1].source, Some([127, 0, 0, 2].into()));
        assert_eq!(plans[2].source, Some([127, 0, 0, 1].into()));
        assert!(parse(&["--ws-url", "ws://127.0.0.1:1/,ws://10.0.0.1:2/"]).is_err());
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--duration", "-1"]).is_err());
        assert!(parse(&["fanout", "-n", "2", "--senders", "3"]).is_err());
        assert!(parse(&["ramp", "--ramp-factor", "1"]).is_err());
        assert!(parse(&["idle", "--source-addresses", "300"]).is_err());
        assert!(parse(&["--logins", "0"]).is_err());
        assert!(parse(&["login", "-n", "5000"]).is_err());
    }
}
