//! Runs tiny versions of every scenario against the real server, started in this process.

use std::path::Path;
use std::time::Duration;

use chat_bench::scenario::{ScenarioConfig, ScenarioKind, run};
use server::config::Config;

/// A server on an ephemeral loopback port with the fixture key and raised rate limits.
async fn start_server(dir: &Path) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    start_server_with(dir, 10_000).await
}

/// A server allowing `messages_per_second` per connection (burst the same).
async fn start_server_with(
    dir: &Path,
    messages_per_second: u32,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    start_server_configured(dir, |config| {
        config.limits.messages_per_second = messages_per_second;
        config.limits.message_burst = messages_per_second;
    })
    .await
}

/// A server with the test settings changed by `configure`.
async fn start_server_configured(
    dir: &Path,
    configure: impl FnOnce(&mut Config),
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/fixtures/test-key.pem");
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.identity.key_file = dir.join("key.pem");
    std::fs::copy(fixture, &config.identity.key_file).unwrap();
    config.identity.guest_file = dir.join("guests.jsonl");
    config.engine.database = dir.join("chat.db");
    config.shutdown_grace = Duration::from_secs(2);
    // Every generated client comes from 127.0.0.x, and idle clients share logins.
    config.limits.logins_per_minute = 100_000;
    config.limits.login_burst = 10_000;
    config.limits.max_connections_per_ip = 0;
    config.limits.max_tcp_connections_per_ip = 0;
    config.limits.max_connections_per_user = 0;
    config.limits.frames_per_second = 10_000;
    config.limits.frame_burst = 10_000;
    configure(&mut config);
    let server = server::Server::bind(config).await.expect("server binds");
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiny_seed_run_delivers_everything_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_server(dir.path()).await;

    let mut config =
        ScenarioConfig::defaults(ScenarioKind::Seed, &format!("ws://{addr}/")).unwrap();
    config.clients = 20;
    config.channels = 4;
    config.rate = 5.0;
    config.duration = Duration::from_secs(2);
    config.drain = Duration::from_secs(5);
    config.connect_concurrency = 10;
    config.setup_timeout = Duration::from_secs(60);
    config.server_pids = vec![std::process::id()];

    let result = run(&config).await.expect("run completes");
    eprintln!("{}", result.table());
    let d = &result.deliveries;
    assert_eq!(result.clients_ready, 20);
    assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
    // 20 senders at 5 msg/s for 2 s: about 10 each (the first at the barrier).
    assert!(
        (20 * 9..=20 * 11).contains(&d.messages_sent),
        "sent {}",
        d.messages_sent
    );
    assert_eq!(d.messages_acked, d.messages_sent);
    assert_eq!(d.messages_rejected, 0);
    // Each channel has 5 members, the sender included.
    assert_eq!(d.expected, d.messages_sent * 5);
    assert_eq!(d.received, d.expected);
    assert_eq!(d.lost, 0);
    assert_eq!(d.duplicated, 0);
    assert_eq!(d.unexpected, 0);
    assert_eq!(result.latency_us.count, d.received);
    assert!(result.latency_us.max > 0);
    assert!(result.deliveries_per_second > 0.0);
    let server = &result.server[0];
    assert!(server.cpu_percent.is_some() && server.peak_rss_kib.is_some());

    let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
    assert_eq!(json["deliveries"]["lost"], 0);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiny_fanout_run_reaches_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_server(dir.path()).await;
    let mut config =
        ScenarioConfig::defaults(ScenarioKind::Fanout, &format!("ws://{addr}/")).unwrap();
    config.clients = 30;
    config.senders = 2;
    config.rate = 4.0;
    config.duration = Duration::from_secs(1);
    config.drain = Duration::from_secs(5);
    let result = run(&config).await.expect("run completes");
    let d = &result.deliveries;
    assert_eq!(result.clients_ready, 30);
    assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
    assert!(
        (6..=10).contains(&d.messages_sent),
        "sent {}",
        d.messages_sent
    );
    assert_eq!(d.expected, d.messages_sent * 30);
    assert_eq!((d.received, d.lost, d.duplicated), (d.expected, 0, 0));
    let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
    assert_eq!(json["config"]["duration"], 1.0);
    assert_eq!(json["config"]["kind"], "fanout");
    let _ = stop.send(());
}

#[tokio::test]
async fn non_loopback_target_is_refused_before_connecting() {
    let config = ScenarioConfig::defaults(ScenarioKind::Fanout, "ws://192.0.2.7:8080/").unwrap();
    let err = run(&config).await.unwrap_err();
    assert!(err.contains("not a loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiny_idle_run_reports_memory_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_server(dir.path()).await;
    let mut config =
        ScenarioConfig::defaults(ScenarioKind::Idle, &format!("ws://{addr}/")).unwrap();
    config.clients = 40;
    config.channels = 4;
    config.logins = Some(3);
    config.source_addresses = 3;
    config.duration = Duration::from_millis(500);
    config.drain = Duration::ZERO;
    config.server_pids = vec![std::process::id()];
    let result = run(&config).await.expect("run completes");
    eprintln!("{}", result.table());
    assert_eq!(result.clients_ready, 40);
    assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
    assert_eq!(result.deliveries.messages_sent, 0);
    let idle = result.idle.as_ref().expect("idle report");
    assert_eq!(
        (idle.connections, idle.dropped, idle.source_addresses),
        (40, 0, 3)
    );
    assert!(idle.rss_before_kib.is_some() && idle.rss_connected_kib.is_some());
    assert!(idle.kib_per_connection.is_some());
    let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
    assert_eq!(json["config"]["kind"], "idle");
    assert_eq!(json["idle"]["connections"], 40);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiny_reconnect_storm_loses_nothing_after_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_server(dir.path()).await;
    let mut config =
        ScenarioConfig::defaults(ScenarioKind::ReconnectStorm, &format!("ws://{addr}/")).unwrap();
    config.clients = 24;
    config.channels = 4;
    config.rate = 4.0;
    config.duration = Duration::from_secs(1);
    let result = run(&config).await.expect("run completes");
    eprintln!("{}", result.table());
    assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
    let storm = result.storm.as_ref().expect("storm report");
    assert_eq!((storm.dropped, storm.reconnected), (24, 24));
    assert_eq!(storm.reconnect_us.count, 24);
    assert!(storm.storm_secs > 0.0);
    let d = &result.deliveries;
    assert!(d.messages_sent > 0);
    // Each channel has 6 members again after the storm.
    assert_eq!(d.expected, d.messages_sent * 6);
    assert_eq!((d.received, d.lost, d.duplicated), (d.expected, 0, 0));
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ramp_stops_at_the_first_step_the_server_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    // 4 messages per second per connection (burst 4), so 12 in a 2 s step: 2/s and 4/s hold,
    // 8/s (16 messages) is refused in part.
    let (addr, stop) = start_server_with(dir.path(), 4).await;
    let mut config =
        ScenarioConfig::defaults(ScenarioKind::Ramp, &format!("ws://{addr}/")).unwrap();
    config.clients = 8;
    config.channels = 2;
    config.rate = 2.0;
    config.ramp_factor = 2.0;
    config.ramp_steps = 5;
    config.duration = Duration::from_secs(2);
    config.drain = Duration::from_secs(5);
    config.p99_bound = Duration::from_secs(5);
    let result = run(&config).await.expect("run completes");
    eprintln!("{}", result.table());
    let ramp = result.ramp.as_ref().expect("ramp report");
    let held: Vec<bool> = ramp.steps.iter().map(|s| s.held).collect();
    assert_eq!(held, [true, true, false], "{:?}", ramp.steps);
    assert_eq!(ramp.highest_held_messages_per_second, Some(32.0));
    assert!(ramp.steps[2].errors > 0, "the refused messages are counted");
    // The result shown is that of the highest step held.
    assert_eq!(result.config.rate, 4.0);
    assert_eq!(result.deliveries.lost, 0);
    assert!(result.errors.is_empty());
    let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
    assert_eq!(json["ramp"]["steps"][2]["held"], false);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiny_login_run_counts_logins_refreshes_and_server_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_server(dir.path()).await;
    let mut config =
        ScenarioConfig::defaults(ScenarioKind::Login, &format!("ws://{addr}/")).unwrap();
    config.clients = 4;
    config.logins = Some(40);
    config.refreshes_per_login = 2;
    // The login cap ends the run long before this.
    config.duration = Duration::from_secs(60);
    config.server_pids = vec![std::process::id()];
    let result = run(&config).await.expect("run completes");
    eprintln!("{}", result.table());
    assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
    let login = result.login.as_ref().expect("login report");
    assert_eq!((login.workers, login.logins, login.refreshes), (4, 40, 80));
    assert_eq!((login.login_us.count, login.refresh_us.count), (40, 80));
    assert!(login.login_us.p50 > 0 && login.login_us.p99 >= login.login_us.p50);
    assert!(login.refresh_us.max >= login.refresh_us.p99);
    assert!(login.logins_per_second > 0.0 && login.refreshes_per_second > 0.0);
    assert!(login.wall_secs < 30.0, "the cap ended the run");
    assert!(login.server_cpu_ms_per_request.is_some_and(|ms| ms > 0.0));
    assert!(result.server[0].cpu_percent.is_some());
    let table = result.table();
    for needle in ["logins/s", "refresh p99", "server cpu/request"] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }
    let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
    assert_eq!(json["config"]["kind"], "login");
    assert_eq!(json["login"]["logins"], 40);
    assert_eq!(json["login"]["refreshes"], 80);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_run_counts_refusals_by_status() {
    let dir = tempfile::tempdir().unwrap();
    // The server's own per-address login limit: a burst of 5, then one a minute.
    let (addr, stop) = start_server_configured(dir.path(), |c| {
        c.limits.logins_per_minute = 1;
        c.limits.login_burst = 5;
    })
    .await;
    let mut config =
        ScenarioConfig::defaults(ScenarioKind::Login, &format!("ws://{addr}/")).unwrap();
    config.clients = 2;
    config.logins = Some(20);
    config.refreshes_per_login = 0;
    config.duration = Duration::from_secs(60);
    let result = run(&config).await.expect("run completes");
    eprintln!("{}", result.table());
    let login = result.login.as_ref().expect("login report");
    assert_eq!(login.logins, 5);
    assert_eq!(
        result.errors.get("login:http_429"),
        Some(&15),
        "{:?}",
        result.errors
    );
    assert!(result.table().contains("login:http_429: 15"));
    // No --server-pid: no CPU figures.
    assert!(result.server.is_empty() && login.server_cpu_ms_per_request.is_none());
    let _ = stop.send(());
}
