//! How the server ends connections: a closing handshake with a code and a reason that reach the
//! client whole (never a TCP reset that eats them), pings under the flood limit, and protocol
//! violations closed with their RFC 6455 codes. (Slow consumers: `lifecycle`.)

mod common;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// A masked client frame: `first` is the FIN/RSV/opcode byte.
fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![first];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn a_flooding_client_receives_every_reply_then_1008_with_the_reason() {
    let server = TestServer::start().await;
    let mut eve = server.named("Eve").await;
    eve.join("lobby").await;
    // 400 messages at once, past the frame burst (200 at 50/s, two spent on set-name and
    // join): the server answers what it read (10 messages sent, the rest `rate_limited`),
    // closes with 1008, and discards the rest, still unread in its socket when it closes.
    let message = json!({"type": "message", "payload": {"channel": "lobby", "message": "flood"}});
    eve.send_all((0..400).map(|_| Message::Text(message.to_string().into())))
        .await;
    let (texts, close) = eve.read_to_close().await;
    assert_eq!(
        close,
        Some((1008, "too many frames: flooding".to_owned())),
        "after {} frames",
        texts.len()
    );
    let answered = texts
        .iter()
        .filter(|t| t["code"] == "rate_limited" || t["message"] == "Message sent to lobby: flood")
        .count();
    let limited = texts.iter().filter(|t| t["code"] == "rate_limited").count();
    assert!(
        (190..400).contains(&answered),
        "every request read before the close is answered: {answered}"
    );
    assert!(limited >= 150, "{limited} rate_limited errors");
    eve.finish_close()
        .await
        .expect("a closing handshake, not a reset");
}

#[tokio::test]
async fn a_refused_client_that_sent_data_at_once_still_reads_why() {
    let server = TestServer::start().await;
    // 100 KiB of frames right behind the request: unread by the server when it refuses.
    let ping = json!({"type": "ping", "ref": "x".repeat(980)}).to_string();
    let frames: Vec<u8> = (0..100)
        .flat_map(|_| masked_frame(0x81, ping.as_bytes()))
        .collect();
    let mut client = Client::connect_pipelined(server.addr, "not-a-token", &frames).await;
    let (texts, close) = client.read_to_close().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["code"], "invalid_token");
    assert_eq!(close.map(|(code, _)| code), Some(1008));
    client
        .finish_close()
        .await
        .expect("a closing handshake, not a reset");
}

#[tokio::test]
async fn websocket_pings_count_against_the_flood_limit() {
    let server = TestServer::start_with(|c| {
        c.limits.frames_per_second = 5;
        c.limits.frame_burst = 10;
    })
    .await;
    let mut eve = server.guest().await;
    eve.send_all((0..1000).map(|_| Message::Ping(Default::default())))
        .await;
    let (_, close) = eve.read_to_close().await;
    assert_eq!(close, Some((1008, "too many frames: flooding".to_owned())));
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains(r#"chat_limit_hits_total{limit="frame_rate"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_bad_utf8_with_1007() {
    let server = TestServer::start().await;
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "invalid UTF-8 in a text frame",
            masked_frame(0x81, &[b'{', 0xff, 0xfe]),
            1007,
        ),
        ("an unmasked frame", vec![0x81, 0x02, b'{', b'}'], 1002),
        ("a reserved bit", masked_frame(0xC1, b"{}"), 1002),
        ("a reserved data opcode", masked_frame(0x83, b"{}"), 1002),
        ("a reserved control opcode", masked_frame(0x8B, b""), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut client = server.guest().await;
        client.write_raw_bytes(&bytes).await;
        let (_, close) = client.read_to_close().await;
        assert_eq!(close.map(|(c, _)| c), Some(code), "{what}");
    }
    let (_, metrics) = server.get("/metrics").await;
    for line in [
        r#"chat_closes_total{reason="bad_utf8"} 1"#,
        r#"chat_closes_total{reason="protocol_error"} 4"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

/// A client that closes first gets the server's Close in reply (RFC 6455 §5.5.1), not a bare end
/// of the stream, even with deliveries still arriving for it.
#[tokio::test]
async fn a_client_that_closes_first_gets_a_close_in_reply() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let mut bob = server.named("Bob").await;
    bob.join("lobby").await;
    bob.send_request(
        "message",
        json!({"channel": "lobby", "message": "still talking"}),
    )
    .await;
    ann.send_raw(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await;
    let close = ann.expect_close().await;
    assert_eq!(close.map(|(code, _)| code), Some(1000));
}
