//! The `chat-server` binary as a process of its own: started on a free port with its files in a
//! test's directory, stopped with a signal (or killed outright), or expected to refuse to start.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{agent, fixture_key};

/// A free port on 127.0.0.1 (bound and released: another process could take it first, which a
/// test then sees as a failed start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `chat-server` on `listen` with `key`, its guest file and database (unless `args` name one)
/// in `dir`, then `args`; no `RUST_LOG` or `REDIS_URL` from the test's environment.
fn server_command(listen: &str, key: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    command
        .args(["--listen", listen])
        .arg("--key-file")
        .arg(key)
        .arg("--guest-file")
        .arg(dir.join("guests.jsonl"))
        .args(database_unless_given(dir, args))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("REDIS_URL");
    command
}

/// `--database dir/chat.db`, unless `args` name a database of their own.
fn database_unless_given(dir: &Path, args: &[&str]) -> Vec<std::ffi::OsString> {
    if args.contains(&"--database") {
        return Vec::new();
    }
    vec!["--database".into(), dir.join("chat.db").into()]
}

/// A running server process; killed if a test ends (or fails) before stopping it.
pub struct ServerProcess {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl ServerProcess {
    /// Starts `chat-server` with its key (`key.pem`, copied from the fixture when missing),
    /// guest file (`guests.jsonl`) and database (`chat.db`, unless `args` name one) in `dir`,
    /// then `args`, and waits
    /// until it answers `/healthz`.
    pub async fn start(dir: &Path, args: &[&str]) -> Self {
        let key = dir.join("key.pem");
        if !key.exists() {
            std::fs::copy(fixture_key(), &key).unwrap();
        }
        let port = free_port();
        let child = server_command(&format!("127.0.0.1:{port}"), &key, dir, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let mut server = Self {
            child: Some(child),
            port,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("{}/healthz", server.http());
            let ready = tokio::task::spawn_blocking(move || agent().get(&url).call().is_ok())
                .await
                .unwrap();
            if ready {
                return server;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the server exited at start: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:port`
    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:port/?auth_token=token`
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/?auth_token={token}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (e.g. `-TERM`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills it with SIGKILL (no shutdown of any kind) and waits until it is gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits (at most 10 s) for it to exit: its exit status.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || child.wait().unwrap()),
        )
        .await
        .expect("the server exits within 10 s")
        .unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `chat-server` run with its files in `dir` (as [`ServerProcess::start`]) and `args`, which must refuse to start: its exit
/// status and everything it printed.
pub fn refused_start(
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let mut child = server_command("127.0.0.1:0", &fixture_key(), dir, args)
        .envs(envs.iter().copied())
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

/// Runs `chat-server ARGS` to completion (e.g. `backup`): its exit status and output.
pub fn run_command(args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    let logs = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, logs)
}
