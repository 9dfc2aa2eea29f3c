//! PROTOCOL.md part 2: refs, presence, direct messages, broadcast, keep-alive.

mod common;

use common::*;
use serde_json::json;

// Each test runs twice: `memory::name` and `redis::name`.
per_engine!(
    every_reply_echoes_the_ref,
    presence_lists_users_once_and_announces_changes,
    direct_messages_reach_every_connection_of_the_user,
    operators_broadcast_to_everyone_through_the_admin_api,
    the_admin_api_is_off_without_a_token,
    unique_names_are_claimed_by_one_user,
);

async fn every_reply_echoes_the_ref() {
    let server = TestServer::start().await;
    let mut client = server.guest().await;
    client
        .send(json!({"type": "set-name", "payload": {"username": "Ann"}, "ref": 1}))
        .await;
    client
        .expect_text(r#"{"message":"Username set to Ann","ref":1}"#)
        .await;
    client
        .send(json!({"type": "join", "payload": {"channel": "c"}, "ref": "two"}))
        .await;
    client
        .expect_text(r#"{"message":"You have joined c","ref":"two"}"#)
        .await;
    client.recv_type("user_joined").await;
    client
        .send(json!({"type": "leave", "payload": {"channel": "x"}, "ref": 3.5}))
        .await;
    client
        .expect_text(r#"{"error":"You are not in x","code":"not_joined","ref":3.5}"#)
        .await;
    client.send(json!({"type": "nope", "ref": 4})).await;
    client
        .expect_text(r#"{"error":"Invalid message","code":"invalid_message","ref":4}"#)
        .await;
    client.send(json!({"type": "ping", "ref": 5})).await;
    client.expect_text(r#"{"type":"pong","ref":5}"#).await;
    client.send_text(r#"{"type":"ping"}"#).await;
    client.expect_text(r#"{"type":"pong"}"#).await;
}

async fn presence_lists_users_once_and_announces_changes() {
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    ann.recv_type("user_joined").await;

    // Bob arrives with two connections: one presence entry, one user_joined.
    let login = server.login().await;
    let mut bob1 = server.connect(&login.auth_token).await;
    bob1.recv_text().await;
    bob1.set_name("Bob").await;
    bob1.join("lobby").await;
    let joined = ann.recv_type("user_joined").await;
    assert_eq!(
        joined,
        json!({"type": "user_joined", "payload": {"channel": "lobby", "user_id": login.user_id, "username": "Bob"}})
    );
    let mut bob2 = server.connect(&login.auth_token).await;
    bob2.recv_text().await;
    bob2.join("lobby").await;

    ann.send(json!({"type": "who", "payload": {"channel": "lobby"}, "ref": 7}))
        .await;
    let who = ann.recv_type("presence").await;
    assert_eq!(who["ref"], 7);
    let users = presence_users(&who["payload"]["users"]);
    let mut expected = vec![
        (ann.user_id.clone(), "Ann".to_owned()),
        (login.user_id.clone(), "Bob".to_owned()),
    ];
    expected.sort();
    assert_eq!(users, expected);

    // First connection leaves: Bob is still present, nothing announced.
    bob1.send_request("leave", json!({"channel": "lobby"}))
        .await;
    bob1.recv().await;
    // Second leaves: now Bob is gone.
    bob2.send_request("leave", json!({"channel": "lobby"}))
        .await;
    bob2.recv().await;
    let left = ann.recv().await;
    assert_eq!(
        left,
        json!({"type": "user_left", "payload": {"channel": "lobby", "user_id": login.user_id, "username": "Bob"}})
    );

    // `who` needs membership.
    bob2.send_request("who", json!({"channel": "lobby"})).await;
    bob2.expect(json!({"error": "You must join the channel first", "code": "not_joined"}))
        .await;
}

async fn direct_messages_reach_every_connection_of_the_user() {
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    let login = server.login().await;
    let mut bob1 = server.connect(&login.auth_token).await;
    bob1.recv_text().await;
    let mut bob2 = server.connect(&login.auth_token).await;
    bob2.recv_text().await;

    ann.send(
        json!({"type": "direct", "payload": {"to": login.user_id, "message": "psst"}, "ref": 1}),
    )
    .await;
    ann.expect(json!({"message": format!("Direct message sent to {}", login.user_id), "ref": 1}))
        .await;
    let first = bob1.recv().await;
    let second = bob2.recv().await;
    assert_eq!(first, second);
    assert_eq!(first["type"], "direct_message_received");
    assert_eq!(first["payload"]["from"], ann.user_id.as_str());
    assert_eq!(first["payload"]["username"], "Ann");
    assert_eq!(first["payload"]["message"], "psst");
    assert!(first["payload"]["id"].as_str().unwrap().len() >= 32);
    assert!(first["payload"]["ts"].as_u64().is_some());

    ann.send_request("direct", json!({"to": "nobody-here", "message": "hello?"}))
        .await;
    ann.expect(json!({"error": "User nobody-here is not online", "code": "not_found"}))
        .await;

    bob1.send_request(
        "direct",
        json!({"to": ann.user_id, "message": "no name yet"}),
    )
    .await;
    bob1.expect(json!({"error": "You must set a username first", "code": "name_required"}))
        .await;
}

async fn operators_broadcast_to_everyone_through_the_admin_api() {
    let server = TestServer::start_with(|c| c.admin_token = Some(ADMIN_TOKEN.into())).await;
    let mut ann = server.guest().await;
    let mut bob = server.named("Bob").await;
    bob.join("somewhere").await;

    let (status, body) = server
        .post("/admin/broadcast", Some("wrong"), json!({"message": "hi"}))
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server
        .post("/admin/broadcast", None, json!({"message": "hi"}))
        .await;
    assert_eq!(status, 401);
    assert!(body.contains("missing admin token"), "{body}");
    let (status, body) = server
        .post("/admin/broadcast", Some(""), json!({"message": "hi"}))
        .await;
    assert_eq!(status, 401, "an empty bearer token is refused: {body}");
    let (status, _) = server
        .post(
            "/admin/broadcast",
            Some(ADMIN_TOKEN),
            json!({"message": ""}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = server
        .post(
            "/admin/broadcast",
            Some(ADMIN_TOKEN),
            json!({"message": "Server restarts in 5 minutes"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    for client in [&mut ann, &mut bob] {
        let frame = client.recv_type("broadcast").await;
        assert_eq!(frame["payload"]["message"], "Server restarts in 5 minutes");
        assert!(frame["payload"]["ts"].as_u64().is_some());
    }
}

async fn the_admin_api_is_off_without_a_token() {
    let server = TestServer::start().await;
    let (status, _) = server
        .post("/admin/broadcast", Some(""), json!({"message": "hi"}))
        .await;
    assert_eq!(status, 404);
}

async fn unique_names_are_claimed_by_one_user() {
    let server = TestServer::start_with(|c| c.engine.unique_names = true).await;
    let mut ann = server.named("Ann").await;
    let mut other = server.guest().await;
    other
        .send_request("set-name", json!({"username": "ann"}))
        .await;
    let error = other.recv().await;
    assert_eq!(error["code"], "name_taken");
    // Ann renames; the old name is free again.
    ann.set_name("Annie").await;
    other.set_name("Ann").await;
}
