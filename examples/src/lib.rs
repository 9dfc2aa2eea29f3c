//! Helpers shared by the examples: finding or starting a chat server, and telling side-by-side
//! instances apart.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether a chat server answers `GET {url}/healthz` within `timeout`.
pub fn server_answers(url: &str, timeout: Duration) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(format!("{}/healthz", url.trim_end_matches('/')))
        .call()
        .is_ok_and(|r| r.status().is_success())
}

/// The loopback address of an `http://127.0.0.1:PORT` / `http://localhost:PORT` URL: where an
/// embedded server may be started. `None` for other hosts.
pub fn local_address(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("http://")?.trim_end_matches('/');
    let addr = rest
        .to_socket_addrs()
        .ok()?
        .find(|a| a.ip().is_loopback())?;
    Some(addr)
}

/// A chat server running in this process, on its own thread.
pub struct EmbeddedServer {
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Starts a chat server on `addr` (port 0 for any), keeping its key and guests in `data_dir`.
pub fn start_embedded_server(addr: SocketAddr, data_dir: &Path) -> Result<EmbeddedServer, String> {
    let mut config = server::config::Config::defaults();
    config.listen = addr;
    config.identity.key_file = data_dir.join("jwt-key.pem");
    config.identity.guest_file = data_dir.join("guests.jsonl");
    config.engine.database = data_dir.join("chat.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("embedded-chat-server")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let server = runtime
        .block_on(server::Server::bind(config))
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr();
    std::thread::Builder::new()
        .name("embedded-chat-server".into())
        .spawn(move || {
            if let Err(error) = runtime.block_on(server.run(std::future::pending())) {
                eprintln!("embedded chat server stopped: {error}");
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(EmbeddedServer { addr })
}

/// A small number that differs between instances running side by side on this machine (0 for
/// the first), held for as long as the returned guard lives. Each instance uses its own guest
/// credentials, so two windows are two players.
pub fn instance_slot() -> (u32, Option<UdpSocket>) {
    for slot in 0..64 {
        if let Ok(socket) = UdpSocket::bind(("127.0.0.1", 47_700 + slot as u16)) {
            return (slot, Some(socket));
        }
    }
    (fallback_slot(), None)
}

fn fallback_slot() -> u32 {
    std::process::id() % 1000 + 64
}

/// Per-app data directory (`<platform data dir>/<app>`), or a temp directory.
pub fn data_dir(app: &str) -> PathBuf {
    directories::ProjectDirs::from("", "", app)
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join(app))
}

/// The plugin crate's `assets/` directory (fonts with wide script coverage and their licenses;
/// they live in the crate so that it can embed and package them).
pub fn assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bevy_chat_plugin/assets")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses() {
        assert_eq!(
            local_address("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert!(local_address("http://localhost:9000/").is_some());
        assert_eq!(local_address("https://chat.example.com"), None);
    }

    #[test]
    fn slots_differ_while_held() {
        let (a, guard_a) = instance_slot();
        let (b, _guard_b) = instance_slot();
        assert_ne!(a, b);
        drop(guard_a);
    }
}
