//! PROTOCOL.md part 1: every row of the seed's protocol, with its exact reply text.

mod common;

use common::*;
use serde_json::json;

// Each test runs twice: `memory::name` and `redis::name`.
per_engine!(
    connect_replies_exactly,
    set_name_join_leave_reply_with_seed_texts,
    message_reaches_every_member_and_the_sender_after_its_ack,
    seed_errors_are_worded_as_the_seed_words_them,
    the_name_belongs_to_the_user_and_survives_reconnects,
    a_disconnect_leaves_every_channel,
);

async fn connect_replies_exactly() {
    let server = TestServer::start().await;
    let login = server.login().await;
    let mut client = server.connect(&login.auth_token).await;
    client
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
}

async fn set_name_join_leave_reply_with_seed_texts() {
    let server = TestServer::start().await;
    let mut client = server.guest().await;
    client
        .send_text(r#"{ "type" : "set-name", "payload" : { "username" : "Ann" }}"#)
        .await;
    client
        .expect_text(r#"{"message":"Username set to Ann"}"#)
        .await;

    client
        .send_text(r#"{ "type" : "join", "payload" : { "channel" : "lobby" }}"#)
        .await;
    client
        .expect_text(r#"{"message":"You have joined lobby"}"#)
        .await;
    // Our addition: members (the joiner included) hear about arrivals.
    let joined = client.recv().await;
    assert_eq!(joined["type"], "user_joined");
    assert_eq!(joined["payload"]["user_id"], client.user_id.as_str());

    client
        .send_text(r#"{ "type" : "join", "payload" : { "channel" : "lobby" }}"#)
        .await;
    client
        .expect_text(r#"{"message":"You have already joined lobby"}"#)
        .await;

    client
        .send_text(r#"{ "type" : "leave", "payload" : { "channel" : "lobby" }}"#)
        .await;
    client
        .expect_text(r#"{"message":"You have left lobby"}"#)
        .await;

    // The seed answers nothing here; we say why.
    client
        .send_text(r#"{ "type" : "leave", "payload" : { "channel" : "lobby" }}"#)
        .await;
    client
        .expect_text(r#"{"error":"You are not in lobby","code":"not_joined"}"#)
        .await;
}

async fn message_reaches_every_member_and_the_sender_after_its_ack() {
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    let mut bob = server.named("Bob").await;
    let mut eve = server.named("Eve").await;
    ann.join("lobby").await;
    ann.recv_type("user_joined").await;
    bob.join("lobby").await;
    bob.recv_type("user_joined").await;
    ann.recv_type("user_joined").await;
    eve.join("elsewhere").await;
    eve.recv_type("user_joined").await;

    ann.send_text(
        r#"{ "type" : "message", "payload" : { "channel" : "lobby", "message" : "hello all" }}"#,
    )
    .await;
    ann.expect_text(r#"{"message":"Message sent to lobby: hello all"}"#)
        .await;
    let own_text = ann.recv_text().await;
    let theirs_text = bob.recv_text().await;
    assert_eq!(own_text, theirs_text, "every member gets the same frame");
    let own: serde_json::Value = serde_json::from_str(&own_text).unwrap();
    assert_eq!(own["type"], "chat_message_received");
    let payload = &own["payload"];
    assert_eq!(payload["username"], "Ann");
    assert_eq!(payload["message"], "hello all");
    assert_eq!(payload["channel"], "lobby");
    assert_eq!(payload["user_id"], ann.user_id.as_str());
    assert!(payload["id"].as_str().unwrap().contains('-'));
    assert!(payload["ts"].as_u64().unwrap() > 1_700_000_000_000);
    // The seed's three fields come first, in the seed's order.
    assert!(
        own_text.starts_with(r#"{"type":"chat_message_received","payload":{"username":"Ann","message":"hello all","channel":"lobby","#),
        "{own_text}"
    );

    // Not a member: nothing arrives.
    eve.sync().await;
    eve.expect_silence(std::time::Duration::from_millis(100))
        .await;
}

async fn seed_errors_are_worded_as_the_seed_words_them() {
    let server = TestServer::start().await;
    let mut client = server.guest().await;

    client
        .send_request("message", json!({"channel": "lobby", "message": "hi"}))
        .await;
    client
        .expect_text(r#"{"error":"You must set a username first","code":"name_required"}"#)
        .await;

    client.set_name("Ann").await;
    client
        .send_request("message", json!({"channel": "lobby", "message": "hi"}))
        .await;
    client
        .expect_text(r#"{"error":"You must join the channel first","code":"not_joined"}"#)
        .await;

    client.send(json!({"type": "dance", "payload": {}})).await;
    client
        .expect_text(r#"{"error":"Invalid message","code":"invalid_message"}"#)
        .await;

    client.send_text("this is not json").await;
    let error = client.recv().await;
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("Error handling message: "),
        "{error}"
    );
    assert_eq!(error["code"], "bad_json");

    client.send(json!({"type": "join", "payload": {}})).await;
    let error = client.recv().await;
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("Error handling message: "),
        "{error}"
    );
    assert_eq!(error["code"], "bad_request");
}

async fn the_name_belongs_to_the_user_and_survives_reconnects() {
    let server = TestServer::start().await;
    let login = server.login().await;
    let mut first = server.connect(&login.auth_token).await;
    first.recv_text().await;
    first.set_name("Ann").await;
    drop(first);

    let mut again = server.connect(&login.auth_token).await;
    again.recv_text().await;
    again.join("lobby").await;
    again
        .send_request(
            "message",
            json!({"channel": "lobby", "message": "still me"}),
        )
        .await;
    assert_eq!(
        again.recv_type_or_error().await,
        json!({"message": "Message sent to lobby: still me"})
    );
    let own = again.recv_type("chat_message_received").await;
    assert_eq!(own["payload"]["username"], "Ann");
}

async fn a_disconnect_leaves_every_channel() {
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    let mut bob = server.named("Bob").await;
    for channel in ["a", "b"] {
        ann.join(channel).await;
        ann.recv_type("user_joined").await;
        bob.join(channel).await;
        bob.recv_type("user_joined").await;
        ann.recv_type("user_joined").await;
    }
    let bob_id = bob.user_id.clone();
    drop(bob);
    let mut left_channels = Vec::new();
    for _ in 0..2 {
        let left = ann.recv_type("user_left").await;
        assert_eq!(left["payload"]["user_id"], bob_id.as_str());
        left_channels.push(left["payload"]["channel"].as_str().unwrap().to_owned());
    }
    left_channels.sort();
    assert_eq!(left_channels, ["a", "b"]);
    ann.send_request("who", json!({"channel": "a"})).await;
    let who = ann.recv_type("presence").await;
    assert_eq!(who["payload"]["users"].as_array().unwrap().len(), 1);
}

/// Memory engine only: with Redis the own copy travels through pub/sub, and a `leave` handled
/// before it arrives ends the subscription first (as with the seed); see docs/PROTOCOL.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_gets_its_copy_even_when_it_leaves_right_after() {
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    ann.recv_type("user_joined").await;
    // Both frames leave before any reply is read.
    ann.send_request("message", json!({"channel": "lobby", "message": "bye"}))
        .await;
    ann.send_request("leave", json!({"channel": "lobby"})).await;
    ann.expect_text(r#"{"message":"Message sent to lobby: bye"}"#)
        .await;
    let own = ann.recv().await;
    assert_eq!(own["type"], "chat_message_received");
    assert_eq!(own["payload"]["message"], "bye");
    ann.expect_text(r#"{"message":"You have left lobby"}"#)
        .await;
}
