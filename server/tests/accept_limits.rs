//! Limits on open TCP connections, checked at accept over raw sockets: per address
//! (`--max-tcp-connections-per-ip`) and in all (`--max-open-connections`). A connection past
//! either is closed at once, without waiting for a request; other addresses keep logging in;
//! places come back when sockets close, also after a WebSocket upgrade.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::cluster::eventually;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HOME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Far above anything these tests wait for: a socket closed sooner was refused, not timed out.
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How soon a refused connection must be closed.
const AT_ONCE: Duration = Duration::from_secs(2);

/// A TCP connection from `source` (any loopback address) to `server`.
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    socket.connect(server).await.expect("the kernel accepts")
}

/// Whether the server closed `stream` (end of stream or a reset) within `wait`; it must send
/// nothing before.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(n)) => panic!("the server sent {n} bytes to a silent socket"),
    }
}

/// A GET over a new connection from `source`: `None` when the server closed it unanswered.
async fn get_from(source: Ipv4Addr, server: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = connect_from(source, server).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("an answer or a close in time")
        .ok()?;
    let response = String::from_utf8(response).expect("a text response");
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Whether a guest login from `source` succeeds.
async fn logs_in(source: Ipv4Addr, server: SocketAddr) -> bool {
    get_from(source, server, "/login-as-guest")
        .await
        .is_some_and(|(status, _)| status == 200)
}

/// The value of the metric line starting with `series` (e.g. `chat_tcp_connections`), read
/// from `source`; 0 when absent.
async fn metric(source: Ipv4Addr, server: SocketAddr, series: &str) -> i64 {
    let (status, body) = get_from(source, server, "/metrics")
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);
    let prefix = format!("{series} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

async fn hits(source: Ipv4Addr, server: SocketAddr, limit: &str) -> i64 {
    metric(
        source,
        server,
        &format!("chat_limit_hits_total{{limit=\"{limit}\"}}"),
    )
    .await
}

#[tokio::test]
async fn silent_sockets_from_one_address_are_capped_at_accept() {
    let server = TestServer::start_with(|c| {
        c.limits.max_tcp_connections_per_ip = 5;
        c.limits.header_read_timeout = HEADER_TIMEOUT;
    })
    .await;
    let addr = server.addr;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(connect_from(HOME, addr).await);
    }
    let mut sixth = connect_from(HOME, addr).await;
    let started = Instant::now();
    assert!(
        closed_within(&mut sixth, AT_ONCE).await,
        "the 6th connection from one address is still open after {AT_ONCE:?}"
    );
    assert!(started.elapsed() < AT_ONCE);
    for socket in &mut silent {
        assert!(
            !closed_within(socket, Duration::from_millis(100)).await,
            "the first five stay open"
        );
    }
    // Another address is not affected.
    assert!(logs_in(OTHER, addr).await, "a login from 127.0.0.2");
    assert_eq!(hits(OTHER, addr, "tcp_connections_per_ip").await, 1);
    assert!(
        metric(OTHER, addr, "chat_tcp_connections").await >= 6,
        "the five silent sockets and this request are open"
    );

    drop(silent);
    eventually("127.0.0.1 logs in again", || logs_in(HOME, addr)).await;
}

#[tokio::test]
async fn websockets_hold_their_place_until_they_close() {
    let server = TestServer::start_with(|c| {
        c.limits.max_tcp_connections_per_ip = 2;
        c.limits.header_read_timeout = HEADER_TIMEOUT;
    })
    .await;
    let addr = server.addr;
    // Log in from elsewhere, so that no HTTP connection of 127.0.0.1 is still closing.
    let (status, body) = get_from(OTHER, addr, "/login-as-guest").await.unwrap();
    assert_eq!(status, 200);
    let login: protocol::LoginResponse = serde_json::from_str(&body).unwrap();
    let mut first = server.connect(&login.auth_token).await;
    first
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    let mut second = server.connect(&login.auth_token).await;
    second
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    // Both upgraded connections still count: a third socket is refused.
    let mut third = connect_from(HOME, addr).await;
    assert!(closed_within(&mut third, AT_ONCE).await);
    first.set_name("Ann").await;

    drop(second);
    eventually("a closed WebSocket gives its place back", || {
        logs_in(HOME, addr)
    })
    .await;
}

#[tokio::test]
async fn open_connections_are_capped_in_all() {
    let server = TestServer::start_with(|c| {
        c.limits.max_open_connections = Some(5);
        c.limits.header_read_timeout = HEADER_TIMEOUT;
    })
    .await;
    let addr = server.addr;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(connect_from(HOME, addr).await);
    }
    let mut sixth = connect_from(OTHER, addr).await;
    assert!(
        closed_within(&mut sixth, AT_ONCE).await,
        "past the cap, a connection from any address is closed at once"
    );
    for socket in &mut silent {
        assert!(!closed_within(socket, Duration::from_millis(100)).await);
    }

    silent.truncate(3);
    eventually("logins work again below the cap", || logs_in(OTHER, addr)).await;
    assert!(hits(OTHER, addr, "open_connections").await >= 1);
    assert_eq!(hits(OTHER, addr, "tcp_connections_per_ip").await, 0);
    drop(silent);
    eventually("every socket closed is counted as closed", || async {
        metric(OTHER, addr, "chat_tcp_connections").await == 1
    })
    .await;
}

#[tokio::test]
async fn behind_a_proxy_connections_are_not_capped_per_address() {
    // Every connection comes from the proxy: a cap per address would lock everyone out.
    let server = TestServer::start_with(|c| {
        c.limits.max_tcp_connections_per_ip = 2;
        c.access.real_ip_header = Some("X-Forwarded-For".into());
        c.limits.header_read_timeout = HEADER_TIMEOUT;
    })
    .await;
    let addr = server.addr;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(HOME, addr).await);
    }
    assert!(logs_in(HOME, addr).await);
    for socket in &mut held {
        assert!(!closed_within(socket, Duration::from_millis(100)).await);
    }
    assert_eq!(hits(HOME, addr, "tcp_connections_per_ip").await, 0);
}
