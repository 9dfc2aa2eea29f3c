//! The `chat-server` binary: flags, start-up, and graceful shutdown on SIGTERM.

mod common;

use std::process::Command;

use common::process::{ServerProcess, refused_start};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connections_with_1001_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]).await;
    let port = server.port;
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

    server.signal("-TERM");
    assert_eq!(
        client.expect_close().await,
        Some((1001, "server shutting down".to_owned()))
    );
    let exit = server.wait().await;
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn an_empty_or_short_admin_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let refused_start =
        |args: &[&str], envs: &[(&str, &str)]| refused_start(dir.path(), args, envs);
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
