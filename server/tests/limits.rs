//! Limits and bad input: each gets its documented error, and the server keeps serving others.

mod common;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

// Each test runs twice: `memory::name` and `redis::name`.
per_engine!(
    bad_frames_get_errors_and_the_connection_stays,
    names_channels_and_messages_follow_the_rules,
    sending_too_fast_is_rate_limited_then_allowed_again,
    channels_per_connection_are_limited,
    oversized_frames_close_with_1009_and_others_keep_chatting,
    sustained_flooding_closes_with_1008,
    invisible_names_are_refused_and_emoji_sequences_are_delivered,
    at_channels_are_reserved,
);

/// Ann and Bob in `lobby`, presence events consumed.
async fn pair(server: &TestServer) -> (Client, Client) {
    let mut ann = server.named("Ann").await;
    let mut bob = server.named("Bob").await;
    ann.join("lobby").await;
    ann.recv_type("user_joined").await;
    bob.join("lobby").await;
    bob.recv_type("user_joined").await;
    ann.recv_type("user_joined").await;
    (ann, bob)
}

/// Bob can still chat with Ann.
async fn still_serving(ann: &mut Client, bob: &mut Client) {
    bob.send_request(
        "message",
        json!({"channel": "lobby", "message": "still here"}),
    )
    .await;
    assert_eq!(
        bob.recv_type_or_error().await,
        json!({"message": "Message sent to lobby: still here"})
    );
    let got = ann.recv_type("chat_message_received").await;
    assert_eq!(got["payload"]["message"], "still here");
}

async fn bad_frames_get_errors_and_the_connection_stays() {
    let server = TestServer::start().await;
    let (mut ann, mut bob) = pair(&server).await;
    let cases = [
        ("{", "bad_json"),
        ("[1,2,3]", "bad_json"),
        ("\"just a string\"", "bad_json"),
        ("{}", "invalid_message"),
        (r#"{"type":null}"#, "invalid_message"),
        (r#"{"type":"join"}"#, "bad_request"),
        (r#"{"type":"join","payload":"lobby"}"#, "bad_request"),
        (r#"{"type":"join","payload":{"channel":42}}"#, "bad_request"),
        (
            r#"{"type":"message","payload":{"channel":"lobby"}}"#,
            "bad_request",
        ),
        (
            r#"{"type":"message","payload":{"channel":"lobby","message":["x"]}}"#,
            "bad_request",
        ),
        (
            r#"{"type":"join","payload":{"channel":"c","history":"all"}}"#,
            "bad_request",
        ),
        (
            r#"{"type":"join","payload":{"channel":"c","since":"yesterday"}}"#,
            "bad_request",
        ),
        (
            r#"{"type":"history","payload":{"channel":"lobby","before":-1}}"#,
            "bad_request",
        ),
        (r#"{"type":"ping","ref":[1]}"#, "bad_request"),
        (
            r#"{"type":"direct","payload":{"message":"no recipient"}}"#,
            "bad_request",
        ),
    ];
    for (frame, code) in cases {
        ann.send_text(frame).await;
        let reply = ann.recv().await;
        assert_eq!(reply["code"], code, "{frame} → {reply}");
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    ann.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    let reply = ann.recv().await;
    assert_eq!(reply["code"], "bad_json");
    still_serving(&mut ann, &mut bob).await;
    still_serving(&mut bob, &mut ann).await;
}

async fn names_channels_and_messages_follow_the_rules() {
    let server = TestServer::start_with(|c| c.limits.max_message_chars = 20).await;
    let (mut ann, mut bob) = pair(&server).await;
    for name in [
        "",
        "   ",
        " padded",
        &"n".repeat(33),
        "tab\there",
        "evil\u{202E}name",
    ] {
        ann.send_request("set-name", json!({"username": name}))
            .await;
        assert_eq!(ann.recv().await["code"], "bad_name", "{name:?}");
    }
    ann.set_name("名前").await;
    for channel in ["", &"c".repeat(65), "new\nline"] {
        ann.send_request("join", json!({"channel": channel})).await;
        assert_eq!(ann.recv().await["code"], "bad_channel", "{channel:?}");
    }
    ann.send_request(
        "message",
        json!({"channel": "lobby", "message": "x".repeat(21)}),
    )
    .await;
    ann.expect(
        json!({"error": "Message too long: 21 characters, at most 20 allowed", "code": "too_long"}),
    )
    .await;
    ann.send_request("message", json!({"channel": "lobby", "message": "  "}))
        .await;
    assert_eq!(ann.recv().await["code"], "bad_message");
    ann.send_request(
        "message",
        json!({"channel": "lobby", "message": "bell\u{7}"}),
    )
    .await;
    assert_eq!(ann.recv().await["code"], "bad_message");
    still_serving(&mut ann, &mut bob).await;
}

async fn sending_too_fast_is_rate_limited_then_allowed_again() {
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 1;
        c.limits.message_burst = 2;
    })
    .await;
    let (mut ann, mut bob) = pair(&server).await;
    let mut codes = Vec::new();
    for n in 0..4 {
        ann.send(json!({"type": "message", "payload": {"channel": "lobby", "message": format!("m{n}")}, "ref": n}))
            .await;
        let reply = ann.recv().await;
        if reply.get("code").is_some() {
            codes.push(reply["code"].as_str().unwrap().to_owned());
        } else {
            ann.recv_type("chat_message_received").await;
        }
    }
    assert!(codes.iter().all(|c| c == "rate_limited"), "{codes:?}");
    assert!(
        !codes.is_empty(),
        "a burst of 4 against a burst limit of 2 must be limited"
    );
    // Bob has his own budget.
    still_serving(&mut ann, &mut bob).await;
}

async fn channels_per_connection_are_limited() {
    let server = TestServer::start_with(|c| c.limits.max_channels_per_connection = 2).await;
    let mut ann = server.named("Ann").await;
    ann.join("one").await;
    ann.join("two").await;
    ann.send_request("join", json!({"channel": "three"})).await;
    let reply = ann.recv_type_or_error().await;
    assert_eq!(reply["code"], "too_many_channels");
    ann.send_request("leave", json!({"channel": "one"})).await;
    ann.recv_type_or_error().await;
    ann.join("three").await;
}

async fn oversized_frames_close_with_1009_and_others_keep_chatting() {
    let server = TestServer::start_with(|c| c.limits.max_frame_bytes = 1024).await;
    let (mut ann, mut bob) = pair(&server).await;
    let mut eve = server.named("Eve").await;
    let huge =
        json!({"type": "message", "payload": {"channel": "lobby", "message": "x".repeat(4096)}});
    eve.send(huge).await;
    let close = eve.expect_close().await;
    assert_eq!(close.map(|(code, _)| code), Some(1009));
    still_serving(&mut ann, &mut bob).await;
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains(r#"chat_limit_hits_total{limit="frame_size"} 1"#),
        "{metrics}"
    );
}

async fn sustained_flooding_closes_with_1008() {
    let server = TestServer::start_with(|c| {
        c.limits.frames_per_second = 5;
        c.limits.frame_burst = 10;
    })
    .await;
    let (mut ann, mut bob) = pair(&server).await;
    let mut eve = server.guest().await;
    // Each ping waits for its pong (or the close): had frames still been in flight when the
    // server hung up, its kernel would answer them with a reset, and the close frame (or this
    // side's next send) could be lost to it.
    let mut close = None;
    for _ in 0..50 {
        eve.send_text(r#"{"type":"ping"}"#).await;
        match eve.next_seen().await {
            Seen::Text(text) => assert_eq!(text, r#"{"type":"pong"}"#),
            Seen::Close(frame) => {
                close = frame;
                break;
            }
            Seen::Ended => break,
        }
    }
    assert_eq!(close.map(|(code, _)| code), Some(1008));
    still_serving(&mut ann, &mut bob).await;
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains(r#"chat_limit_hits_total{limit="frame_rate"} 1"#),
        "{metrics}"
    );
}

/// A name with a zero width space would look like "Ann": refused. A message with an emoji
/// sequence joined by a zero width joiner still reaches the channel intact.
async fn invisible_names_are_refused_and_emoji_sequences_are_delivered() {
    let server = TestServer::start().await;
    let (mut ann, mut bob) = pair(&server).await;
    let mut eve = server.guest().await;
    eve.send_request("set-name", json!({"username": "Ann\u{200B}"}))
        .await;
    eve.expect(json!({
        "error": "Invalid username: must not contain invisible characters (U+200B)",
        "code": "bad_name",
    }))
    .await;
    eve.send_request("join", json!({"channel": "lobby\u{2028}"}))
        .await;
    assert_eq!(eve.recv().await["code"], "bad_channel");

    let coder = "👩\u{200D}💻";
    bob.send_request("message", json!({"channel": "lobby", "message": coder}))
        .await;
    assert_eq!(
        bob.recv_type_or_error().await,
        json!({"message": format!("Message sent to lobby: {coder}")})
    );
    let got = ann.recv_type("chat_message_received").await;
    assert_eq!(got["payload"]["message"], coder);
}

/// `@…` names belong to clients (the plugin's `@system` log): joining one, or its fullwidth
/// (U+FF20) and small (U+FE6B) lookalikes, is refused, and so is sending to one.
async fn at_channels_are_reserved() {
    let server = TestServer::start().await;
    let (mut ann, mut bob) = pair(&server).await;
    let reserved = "Invalid channel name: channel names starting with @ are reserved";
    ann.send(json!({"type": "join", "payload": {"channel": "@system"}, "ref": 1}))
        .await;
    ann.expect(json!({"error": reserved, "code": "bad_channel", "ref": 1}))
        .await;
    for channel in ["\u{FF20}system", "\u{FE6B}system", "@"] {
        ann.send_request("join", json!({"channel": channel})).await;
        ann.expect(json!({"error": reserved, "code": "bad_channel"}))
            .await;
    }
    ann.send_request("message", json!({"channel": "@x", "message": "hi"}))
        .await;
    ann.expect(json!({"error": reserved, "code": "bad_channel"}))
        .await;
    // An @ elsewhere in the name is fine.
    ann.join("team@home").await;
    still_serving(&mut ann, &mut bob).await;
}
