//! Connection lifecycle: keep-alive, slow consumers, shutdown, health and metrics.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

// Each test runs twice: `memory::name` and `redis::name`.
per_engine!(
    a_client_that_answers_pings_stays_and_a_dead_one_is_dropped,
    a_client_that_cannot_keep_up_is_dropped_without_hurting_others,
    shutdown_closes_every_connection_with_1001,
    health_and_metrics_report_the_server_state,
);

async fn a_client_that_answers_pings_stays_and_a_dead_one_is_dropped() {
    let server = TestServer::start_with(|c| {
        c.limits.ping_interval = Duration::from_millis(100);
        c.limits.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let mut alive = server.guest().await;
    let mut dead = server.guest().await;
    // `alive` keeps reading, so its WebSocket library answers the server's pings; `dead`
    // reads nothing for a second (the condition under test), so it never answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        alive.expect_silence(Duration::from_millis(50)).await;
    }
    alive.sync().await;
    // The server closes `dead` with 1008. Its client may not get to read the close frame: the
    // pongs it owes fail to write once the server has hung up, so count on the server's word.
    let close = dead.expect_close().await;
    assert!(matches!(close, None | Some((1008, _))), "{close:?}");
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains(r#"chat_closes_total{reason="idle"} 1"#),
        "{metrics}"
    );
}

async fn a_client_that_cannot_keep_up_is_dropped_without_hurting_others() {
    // Default queue (1,024 frames) and socket buffers; only the sender's rate is lifted.
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.limits.frames_per_second = 100_000;
        c.limits.frame_burst = 100_000;
    })
    .await;
    let mut ann = server.named("Ann").await;
    ann.join("busy").await;
    let login = server.login().await;
    let mut slow = Client::connect_small_buffer(server.addr, &login.auth_token).await;
    slow.recv_text().await;
    slow.join("busy").await;
    // `slow` stops reading. Without a capped send buffer the kernel would park thousands of
    // these frames and the queue would never fill: the client would only go at the idle timeout.
    let text = "y".repeat(500);
    let mut sent = 0;
    let dropped = loop {
        ann.send_request("message", json!({"channel": "busy", "message": text}))
            .await;
        ann.recv_type_or_error().await;
        ann.recv_type("chat_message_received").await;
        sent += 1;
        if sent % 32 == 0 {
            let (_, metrics) = server.get("/metrics").await;
            if metrics.contains("chat_queue_drops_total 1") {
                break true;
            }
        }
        if sent == 3_000 {
            break false;
        }
    };
    assert!(
        dropped,
        "3,000 frames sent and the slow client's queue never filled"
    );
    // Reading again, it gets what the kernel held, then the close frame with the reason.
    let (texts, close) = slow.read_to_close().await;
    assert_eq!(
        close,
        Some((1008, "outgoing queue full: client too slow".to_owned())),
        "after {} frames",
        texts.len()
    );
    slow.finish_close()
        .await
        .expect("a closing handshake, not a reset");
}

async fn shutdown_closes_every_connection_with_1001() {
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let mut bob = server.guest().await;
    let stopping = tokio::spawn(server.stop());
    for client in [&mut ann, &mut bob] {
        let close = client.expect_close().await;
        assert_eq!(close, Some((1001, "server shutting down".to_owned())));
    }
    stopping.await.unwrap();
}

async fn health_and_metrics_report_the_server_state() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["engine"], "ready");

    let mut ann = server.named("Ann").await;
    ann.send_text("{").await;
    ann.recv().await;
    ann.sync().await;
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "chat_connections 1",
        "chat_connections_accepted_total 1",
        "chat_errors_total{code=\"bad_json\"} 1",
        "chat_frames_in_total 3",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("chat_frames_out_total"));
    assert!(metrics.contains("chat_queue_drops_total 0"));

    // Plain HTTP on the WebSocket path explains itself.
    let (status, body) = server.get("/").await;
    assert_eq!(status, 426);
    assert!(body.contains("WebSocket"));

    // A WebSocket client of another protocol version is told which one this server speaks.
    let head = raw_response_head(
        &server,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 426"), "{head}");
    for line in [
        "\r\nupgrade: websocket\r\n",
        "\r\nsec-websocket-version: 13\r\n",
        "\r\nconnection: upgrade\r\n",
    ] {
        assert!(head.contains(line), "missing {line:?} in\n{head}");
    }
}

/// Sends `request` as is and returns the response's head (up to the blank line).
async fn raw_response_head(server: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let read_head = async {
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let read = tcp.read(&mut chunk).await.unwrap();
            assert!(read > 0, "closed before the head ended");
            received.extend_from_slice(&chunk[..read]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read_head)
        .await
        .expect("a response in time");
    let text = String::from_utf8_lossy(&received).into_owned();
    text[..text.find("\r\n\r\n").unwrap() + 2].to_owned()
}
