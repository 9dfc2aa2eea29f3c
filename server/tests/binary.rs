//! The `chat-server` binary: flags, start-up, and graceful shutdown on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server process; killed if a test fails before it exits.
struct ServerProcess(Option<Child>);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the binary and waits until it answers /healthz.
async fn spawn_server(dir: &std::path::Path) -> (ServerProcess, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--key-file")
        .arg(dir.join("key.pem"))
        .arg("--guest-file")
        .arg(dir.join("guests.jsonl"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let child = ServerProcess(Some(child));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let url = format!("http://127.0.0.1:{port}/healthz");
        let ready = tokio::task::spawn_blocking(move || agent().get(&url).call().is_ok())
            .await
            .unwrap();
        if ready {
            return (child, port);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connections_with_1001_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture_key(), dir.path().join("key.pem")).unwrap();
    let (mut child, port) = spawn_server(dir.path()).await;
    let (_, body) = http_get(format!("http://127.0.0.1:{port}/login-as-guest")).await;
    let login: protocol::LoginResponse = serde_json::from_str(&body).unwrap();
    let mut client = Client::connect(&format!(
        "ws://127.0.0.1:{port}/?auth_token={}",
        login.auth_token
    ))
    .await;
    client
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;

    let status = Command::new("kill")
        .args(["-TERM", &child.0.as_ref().unwrap().id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        client.expect_close().await,
        Some((1001, "server shutting down".to_owned()))
    );
    let mut process = child.0.take().unwrap();
    let exit = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || process.wait().unwrap()),
    )
    .await
    .expect("the server exits within 10 s of SIGTERM")
    .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

/// The binary run with `args` and `envs` must refuse to start: its exit status and stderr.
fn refused_start(args: &[&str], envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--listen", "127.0.0.1:0", "--key-file"])
        .arg(fixture_key())
        .arg("--guest-file")
        .arg(dir.path().join("guests.jsonl"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with {args:?} {envs:?} instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, logs)
}

#[test]
fn an_empty_or_short_admin_token_refuses_to_start() {
    let (status, logs) = refused_start(&[], &[("CHAT_ADMIN_TOKEN", "")]);
    assert!(!status.success());
    assert!(logs.contains("set but empty"), "{logs}");
    let (status, logs) = refused_start(&["--admin-token", ""], &[]);
    assert!(!status.success());
    assert!(logs.contains("set but empty"), "{logs}");
    let (status, logs) = refused_start(&["--admin-token", "change-me"], &[]);
    assert!(!status.success());
    assert!(logs.contains("at least 16 bytes"), "{logs}");
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--issuer-url",
        "--key-file",
        "--engine",
        "--max-message-chars",
        "--admin-token",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("CHAT_LISTEN"));
}
