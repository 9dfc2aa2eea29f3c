//! Command-line interface: arguments and their translation into a [`ScenarioConfig`].

use std::path::PathBuf;
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

    /// Scenario to run: seed (N clients over C channels, all sending) or fanout (one channel, S
    /// senders). Default: seed.
    #[arg(long = "scenario", value_enum, id = "scenario_flag")]
    pub scenario_flag: Option<ScenarioKind>,

    /// WebSocket URL of the server (the token is appended as ?auth_token=).
    #[arg(
        long,
        env = "CHAT_BENCH_WS_URL",
        default_value = "ws://127.0.0.1:8080/"
    )]
    pub ws_url: String,

    /// Base URL for guest logins (GET {url}/login-as-guest). Default: the host and port of
    /// --ws-url over http.
    #[arg(long, env = "CHAT_BENCH_LOGIN_URL", conflicts_with = "tokens_file")]
    pub login_url: Option<String>,

    /// File with one access token per line, used instead of guest logins (reused in turn when
    /// there are fewer tokens than clients).
    #[arg(long, env = "CHAT_BENCH_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Number of clients. Default: 1500 (seed), 1000 (fanout).
    #[arg(long, short = 'n')]
    pub clients: Option<usize>,

    /// Number of channels (seed).
    #[arg(long, short = 'c', default_value_t = 100)]
    pub channels: usize,

    /// Number of sending clients (fanout; in seed every client sends).
    #[arg(long, short = 's', default_value_t = 1)]
    pub senders: usize,

    /// Messages per second per sender.
    #[arg(long, short = 'r', default_value_t = 1.0)]
    pub rate: f64,

    /// Length of the sending phase, seconds.
    #[arg(long, short = 'd', default_value_t = 20.0)]
    pub duration: f64,

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
    #[arg(long)]
    pub server_pid: Option<u32>,

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
        let mut config = ScenarioConfig::defaults(self.kind(), &self.ws_url)?;
        if let Some(url) = &self.login_url {
            config.auth = Auth::LoginUrl(url.trim_end_matches('/').to_owned());
        }
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--tokens-file {}: {e}", path.display()))?;
            let tokens: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            if tokens.is_empty() {
                return Err(format!("--tokens-file {}: no tokens", path.display()));
            }
            config.auth = Auth::Tokens(tokens);
        }
        if let Some(clients) = self.clients {
            config.clients = clients;
        }
        match config.kind {
            ScenarioKind::Seed => config.channels = self.channels,
            ScenarioKind::Fanout => config.senders = self.senders,
        }
        config.rate = self.rate;
        config.duration = seconds("duration", self.duration)?;
        config.drain = seconds("drain", self.drain)?;
        config.setup_timeout = seconds("setup-timeout", self.setup_timeout)?;
        config.connect_concurrency = self.connect_concurrency;
        config.server_pid = self.server_pid;
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
        assert!(matches!(&config.auth, Auth::Tokens(t) if t == &["a", "b"]));
        let plans = config.plans("x");
        assert_eq!(plans.len(), 3);
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--duration", "-1"]).is_err());
        assert!(parse(&["fanout", "-n", "2", "--senders", "3"]).is_err());
    }
}
