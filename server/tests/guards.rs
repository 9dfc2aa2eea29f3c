//! Abuse limits in front of the chat, over real connections: connections per address and per
//! user, logins per address, the browser origin allow list, the request-head deadline, and the
//! `chat_limit_hits_total` counter of each.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const TOO_MANY: &str = "too_many_connections";

/// Connects with extra request headers; the handshake's result (a refused origin is an error).
async fn connect_with(
    server: &TestServer,
    token: &str,
    headers: &[(&'static str, &str)],
) -> Result<Client, WsError> {
    let mut request = server.ws_url(token).into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("handshake in time")?;
    Ok(Client::from_stream(ws))
}

/// Expects the refusal of a connection over its limit: the error reply, then close 1008.
async fn expect_refused(client: &mut Client, text: &str) {
    let reply = client.recv().await;
    assert_eq!(reply["code"], TOO_MANY, "{reply}");
    assert_eq!(reply["error"], text);
    let (code, _) = client.expect_close().await.expect("a close frame");
    assert_eq!(code, 1008);
}

#[tokio::test]
async fn connections_per_address_are_limited_and_given_back() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_ip = 2).await;
    let a = server.guest().await;
    let _b = server.guest().await;
    let login = server.login().await;
    let mut third = server.connect(&login.auth_token).await;
    expect_refused(&mut third, "Too many connections from your address").await;
    assert_eq!(server.limit_hits("connections_per_ip").await, 1);

    // The others keep chatting, and a closed connection frees its place.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = server.connect(&login.auth_token).await;
        let reply = again.recv().await;
        if reply["message"] == "Successfully connected!" {
            break;
        }
        assert_eq!(reply["code"], TOO_MANY);
        assert!(
            Instant::now() < deadline,
            "the closed connection's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_per_user_are_limited() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_user = 1).await;
    let login = server.login().await;
    let mut first = server.connect(&login.auth_token).await;
    first
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    let mut second = server.connect(&login.auth_token).await;
    expect_refused(&mut second, "Too many connections for this user").await;
    // Another user is not affected; the first connection still works.
    let _other = server.guest().await;
    first.set_name("Ann").await;
    assert_eq!(server.limit_hits("connections_per_user").await, 1);
}

#[tokio::test]
async fn behind_a_proxy_the_forwarded_address_is_counted() {
    let server = TestServer::start_with(|c| {
        c.limits.max_connections_per_ip = 1;
        c.access.real_ip_header = Some("X-Forwarded-For".into());
    })
    .await;
    let (a, b, c) = (
        server.login().await,
        server.login().await,
        server.login().await,
    );
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let mut one = connect_with(&server, &a.auth_token, &from("198.51.100.1"))
        .await
        .unwrap();
    let mut two = connect_with(&server, &b.auth_token, &from("spoofed, 198.51.100.2"))
        .await
        .unwrap();
    for client in [&mut one, &mut two] {
        client
            .expect_text(r#"{"message":"Successfully connected!"}"#)
            .await;
    }
    let mut three = connect_with(&server, &c.auth_token, &from("198.51.100.1"))
        .await
        .unwrap();
    expect_refused(&mut three, "Too many connections from your address").await;
}

#[tokio::test]
async fn logins_and_refreshes_per_address_are_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.limits.logins_per_minute = 1;
        c.limits.login_burst = 2;
    })
    .await;
    let first = server.login().await;
    let (status, _) = server
        .get(&format!(
            "/refresh-access-token?refresh_token={}",
            first.refresh_token
        ))
        .await;
    assert_eq!(
        status, 200,
        "the refresh takes the second token of the burst"
    );
    let url = format!("{}/login-as-guest", server.http());
    let (status, retry_after, body) = tokio::task::spawn_blocking(move || {
        let mut response = agent().get(&url).call().unwrap();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), retry, body)
    })
    .await
    .unwrap();
    assert_eq!(status, 429);
    assert_eq!(body, "Error: Too many login requests, try again later");
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // The JWKS is not a login: other services keep fetching it.
    let (status, _) = server.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    assert_eq!(server.limit_hits("login_rate").await, 1);
}

#[tokio::test]
async fn browsers_from_other_origins_are_refused() {
    let server = TestServer::start_with(|c| {
        c.access.allowed_origins = vec!["https://game.example".into()];
    })
    .await;
    let token = server.login().await.auth_token;
    match connect_with(&server, &token, &[("origin", "https://evil.example")]).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("origin may not connect"), "{body}");
        }
        Err(other) => panic!("expected HTTP 403, got {other}"),
        Ok(_) => panic!("a foreign origin connected"),
    }
    for headers in [vec![("origin", "https://game.example")], vec![]] {
        let mut client = connect_with(&server, &token, &headers).await.unwrap();
        client
            .expect_text(r#"{"message":"Successfully connected!"}"#)
            .await;
    }
    assert_eq!(server.limit_hits("origin").await, 1);
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_cut_off() {
    let server = TestServer::start_with(|c| {
        c.limits.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    // The head never completes: the server must end the connection, not wait forever.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was held open");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(server.limit_hits("header_timeout").await, 1);
    // Well-behaved requests are unaffected.
    assert_eq!(server.get("/healthz").await.0, 200);
}

/// `GET /login-as-guest` from 127.0.0.1: (status, `Retry-After`).
async fn login_status(server: &TestServer) -> (u16, Option<String>) {
    let url = format!("{}/login-as-guest", server.http());
    tokio::task::spawn_blocking(move || {
        let response = agent().get(&url).call().unwrap();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), retry)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn waiting_exactly_retry_after_is_enough() {
    // One login every 1.5 s: the wait after the burst is fractional, and `Retry-After` must
    // round it up, not down (waiting a rounded-down 1 s would be refused again).
    let server = TestServer::start_with(|c| {
        c.limits.logins_per_minute = 40;
        c.limits.login_burst = 1;
    })
    .await;
    assert_eq!(login_status(&server).await.0, 200);
    let (status, retry_after) = login_status(&server).await;
    assert_eq!(status, 429);
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&wait), "about 1.5 s, rounded up: {wait}");
    // Here a timed wait is the point: the client does exactly what the header says.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        login_status(&server).await,
        (200, None),
        "a login exactly Retry-After seconds later goes through"
    );
}
