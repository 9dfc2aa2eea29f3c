//! Typing indicators over real connections: `typing` reaches the channel's other members as
//! `user_typing` (never the typist's own connections), at most once per `--typing-interval`
//! until a message opens the window again, only from a named, unmuted member, and is never
//! kept in history. On both engines, and across two nodes on Redis.

mod common;

use std::time::Duration;

use common::cluster::{fast, say};
use common::*;
use serde_json::{Value, json};

per_engine!(
    typing_reaches_the_other_members_but_not_the_typist,
    a_typing_within_the_window_is_dropped_until_a_message,
    the_window_ends_by_itself,
    typing_needs_a_joined_channel_and_a_name,
    a_muted_user_cannot_type,
    typing_is_never_kept_in_history,
);

/// Two Redis nodes (a separate test: `redis_only!` would clash with `per_engine!`'s module).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_crosses_nodes_on_redis() {
    run_redis("typing::crosses_nodes", typing_crosses_nodes()).await;
}

const WELCOME: &str = r#"{"message":"Successfully connected!"}"#;

/// Sends `typing` for `channel`.
async fn typing(client: &mut Client, channel: &str) {
    client
        .send_request("typing", json!({ "channel": channel }))
        .await;
}

/// The `user_typing` frame `client` sends for `channel`.
fn typing_of(client: &Client, name: &str, channel: &str) -> Value {
    json!({
        "type": "user_typing",
        "payload": { "channel": channel, "user_id": client.user_id, "username": name },
    })
}

/// The next frame that is not a presence event (`user_joined` / `user_left`).
async fn next_non_presence(client: &mut Client) -> Value {
    loop {
        let value = client.recv().await;
        if value["type"] != "user_joined" && value["type"] != "user_left" {
            return value;
        }
    }
}

/// Asserts that the next frame (presence aside) is `from`'s chat message `text`: proves that
/// nothing (no typing, no reply) was queued before it.
async fn next_is_message(client: &mut Client, text: &str) {
    let next = next_non_presence(client).await;
    assert_eq!(next["type"], "chat_message_received", "{next}");
    assert_eq!(next["payload"]["message"], text, "{next}");
}

/// A client of the user holding `token`, on `server`, with the welcome read.
async fn connect_as(server: &TestServer, token: &str, user_id: &str) -> Client {
    let mut client = server.connect(token).await;
    client.user_id = user_id.to_owned();
    client.expect_text(WELCOME).await;
    client
}

async fn typing_reaches_the_other_members_but_not_the_typist() {
    let server = TestServer::start().await;
    let login = server.login().await;
    let mut ann = connect_as(&server, &login.auth_token, &login.user_id).await;
    ann.set_name("Ann").await;
    let mut ann_too = connect_as(&server, &login.auth_token, &login.user_id).await;
    let mut bob = server.named("Bob").await;
    for client in [&mut ann, &mut ann_too, &mut bob] {
        client.join("lobby").await;
    }

    // Silent: no reply, even with a ref; the others get it without the ref.
    ann.send(json!({"type": "typing", "payload": {"channel": "lobby"}, "ref": "t"}))
        .await;
    assert_eq!(
        next_non_presence(&mut bob).await,
        typing_of(&ann, "Ann", "lobby")
    );

    // Neither of Ann's connections hears of it: the next thing each gets is Bob's message.
    say(&mut bob, "lobby", "hi Ann").await;
    next_is_message(&mut ann, "hi Ann").await;
    next_is_message(&mut ann_too, "hi Ann").await;
}

async fn a_typing_within_the_window_is_dropped_until_a_message() {
    let server = TestServer::start_with(|c| {
        fast(c);
        c.limits.typing_interval = Duration::from_secs(3600);
    })
    .await;
    let mut ann = server.named("Ann").await;
    let mut bob = server.named("Bob").await;
    for channel in ["lobby", "hall"] {
        ann.join(channel).await;
        bob.join(channel).await;
    }

    typing(&mut ann, "lobby").await;
    typing(&mut ann, "lobby").await; // within the window: dropped
    typing(&mut ann, "hall").await; // another channel has its own window
    say(&mut ann, "lobby", "done typing").await;
    typing(&mut ann, "lobby").await; // the message opened the window again
    typing(&mut ann, "hall").await; // but only in its own channel: dropped

    // Order holds within a channel; across channels it need not (on a Redis Cluster the two
    // channels live on different masters, each with its own connection).
    let mut lobby = Vec::new();
    let mut hall = Vec::new();
    while lobby.len() + hall.len() < 4 {
        let next = next_non_presence(&mut bob).await;
        match next["payload"]["channel"].as_str() {
            Some("lobby") => lobby.push(next),
            Some("hall") => hall.push(next),
            _ => panic!("unexpected frame {next}"),
        }
    }
    assert_eq!(hall, [typing_of(&ann, "Ann", "hall")]);
    assert_eq!(lobby[0], typing_of(&ann, "Ann", "lobby"));
    assert_eq!(lobby[1]["type"], "chat_message_received", "{}", lobby[1]);
    assert_eq!(lobby[1]["payload"]["message"], "done typing");
    assert_eq!(lobby[2], typing_of(&ann, "Ann", "lobby"));
    // The dropped `hall` typing was handled before this message, so in `hall`'s order it
    // would have come first.
    say(&mut ann, "hall", "and here").await;
    next_is_message(&mut bob, "and here").await;
    assert_eq!(server.limit_hits("typing_rate").await, 2);
}

async fn the_window_ends_by_itself() {
    let interval = Duration::from_millis(100);
    let server = TestServer::start_with(|c| c.limits.typing_interval = interval).await;
    let mut ann = server.named("Ann").await;
    let mut bob = server.named("Bob").await;
    ann.join("lobby").await;
    bob.join("lobby").await;

    typing(&mut ann, "lobby").await;
    assert_eq!(
        next_non_presence(&mut bob).await,
        typing_of(&ann, "Ann", "lobby")
    );
    // What is tested is the passing of time itself: wait well past the window.
    tokio::time::sleep(interval * 3).await;
    typing(&mut ann, "lobby").await;
    assert_eq!(
        next_non_presence(&mut bob).await,
        typing_of(&ann, "Ann", "lobby")
    );
    assert_eq!(server.limit_hits("typing_rate").await, 0);
}

async fn typing_needs_a_joined_channel_and_a_name() {
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    let mut nameless = server.guest().await;
    let mut bob = server.named("Bob").await;
    nameless.join("lobby").await;
    bob.join("lobby").await;

    ann.send(json!({"type": "typing", "payload": {"channel": "lobby"}, "ref": 1}))
        .await;
    ann.expect(json!({"error": "You must join the channel first", "code": "not_joined", "ref": 1}))
        .await;
    typing(&mut ann, "@system").await;
    ann.expect(json!({
        "error": "Invalid channel name: channel names starting with @ are reserved",
        "code": "bad_channel",
    }))
    .await;
    ann.send_text(r#"{"type":"typing"}"#).await;
    ann.expect(
        json!({"error": "Error handling message: payload is missing", "code": "bad_request"}),
    )
    .await;
    typing(&mut nameless, "lobby").await;
    assert_eq!(
        nameless.recv_type_or_error().await,
        json!({"error": "You must set a username first", "code": "name_required"})
    );

    // Bob heard nothing of it: the next thing he gets is Ann's first message.
    ann.join("lobby").await;
    say(&mut ann, "lobby", "hello").await;
    next_is_message(&mut bob, "hello").await;
}

async fn a_muted_user_cannot_type() {
    let server = TestServer::start_with(|c| c.admin_token = Some(ADMIN_TOKEN.into())).await;
    let mut ann = server.named("Ann").await;
    let mut bob = server.named("Bob").await;
    let mut carol = server.named("Carol").await;
    for client in [&mut ann, &mut bob, &mut carol] {
        client.join("lobby").await;
    }
    let (status, _) = server
        .post(
            "/admin/mute",
            Some(ADMIN_TOKEN),
            json!({ "user_id": ann.user_id, "reason": "spam" }),
        )
        .await;
    assert_eq!(status, 200);

    // With Redis the node applies the mute when its pub/sub copy arrives: moments later. Until
    // then a typing goes through silently, and the pong behind it comes first.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        ann.send(json!({"type": "typing", "payload": {"channel": "lobby"}, "ref": "t"}))
            .await;
        ann.send(json!({"type": "ping", "ref": "p"})).await;
        let first = next_non_presence(&mut ann).await;
        if first != json!({"type": "pong", "ref": "p"}) {
            assert_eq!(
                first,
                json!({"error": "You are muted: spam", "code": "forbidden", "ref": "t"})
            );
            ann.expect(json!({"type": "pong", "ref": "p"})).await;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mute never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    typing(&mut ann, "lobby").await;
    assert_eq!(ann.recv().await["code"], "forbidden");

    // Whatever Bob got before the mute, nothing came after the refusals: the next frame after
    // any earlier typing is Carol's message.
    say(&mut carol, "lobby", "after the mute").await;
    loop {
        let next = next_non_presence(&mut bob).await;
        if next["type"] == "user_typing" {
            continue;
        }
        assert_eq!(next["payload"]["message"], "after the mute", "{next}");
        break;
    }
}

async fn typing_is_never_kept_in_history() {
    let server = TestServer::start().await;
    let mut ann = server.named("Ann").await;
    let mut bob = server.named("Bob").await;
    ann.join("lobby").await;
    bob.join("lobby").await;
    typing(&mut ann, "lobby").await;
    assert_eq!(
        next_non_presence(&mut bob).await,
        typing_of(&ann, "Ann", "lobby")
    );
    say(&mut ann, "lobby", "only this").await;

    ann.send(json!({"type": "history", "payload": {"channel": "lobby"}, "ref": "h"}))
        .await;
    let page = ann.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), ["only this"]);
    let mut carol = server.named("Carol").await;
    carol
        .send_request("join", json!({"channel": "lobby", "history": 10}))
        .await;
    let page = carol.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), ["only this"]);
}

async fn typing_crosses_nodes() {
    let a = TestServer::start_with(fast).await;
    let b = a.start_node(|_| {}).await;
    let login = a.login().await;
    let mut ann = connect_as(&a, &login.auth_token, &login.user_id).await;
    ann.set_name("Ann").await;
    let mut ann_on_b = connect_as(&b, &login.auth_token, &login.user_id).await;
    let mut bob = b.named("Bob").await;
    for client in [&mut ann, &mut ann_on_b, &mut bob] {
        client.join("lobby").await;
    }

    typing(&mut ann, "lobby").await;
    assert_eq!(
        next_non_presence(&mut bob).await,
        typing_of(&ann, "Ann", "lobby")
    );
    // Ann's connection on node B is skipped as well.
    say(&mut bob, "lobby", "seen you").await;
    next_is_message(&mut ann_on_b, "seen you").await;
    next_is_message(&mut ann, "seen you").await;
}
