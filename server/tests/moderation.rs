//! Moderation over real connections: the word filter, mute, kick and ban through the admin API
//! (on both engines, and across two nodes on Redis), and a game's own `Moderator`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use server::identity::Principal;
use server::moderation::{Moderator, Review, Target};

per_engine!(
    listed_words_are_masked_for_everyone_and_names_refused,
    a_muted_user_cannot_send_until_unmuted_even_after_reconnecting,
    a_mute_with_a_length_ends_by_itself,
    a_kicked_user_is_told_why_and_may_come_back,
    a_banned_user_is_closed_and_refused_until_unbanned,
    bad_admin_requests_are_refused_clearly,
    every_admin_action_is_in_the_audit_log_newest_first_in_pages,
);

/// Two Redis nodes (a separate test: `redis_only!` would clash with `per_engine!`'s module).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_reaches_every_node_on_redis() {
    run_redis("moderation::every_node", moderation_reaches_every_node()).await;
}

/// The same on a Redis Cluster (mutes and bans live in each user's slot, on any master).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_reaches_every_node_on_a_redis_cluster() {
    run_redis_cluster(
        "moderation::every_node_cluster",
        moderation_reaches_every_node(),
    )
    .await;
}

async fn admin(server: &TestServer, action: &str, body: Value) -> (u16, Value) {
    let (status, text) = server
        .post(&format!("/admin/{action}"), Some(ADMIN_TOKEN), body)
        .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A server on the test's engine with the admin API and a word list (read at start).
async fn moderated_server() -> TestServer {
    let list = tempfile::tempdir().unwrap();
    let words = list.path().join("words.txt");
    std::fs::write(&words, "# test list\ndarn\nvery bad\nдурак\n笨蛋\n").unwrap();
    TestServer::start_on(&TestEngine::current(), |c| {
        c.admin_token = Some(ADMIN_TOKEN.into());
        c.word_filter = Some(words);
        c.limits.messages_per_second = 100;
        c.limits.message_burst = 100;
    })
    .await
}

/// Sends a message and returns the sender's reply (ack or error).
async fn say(client: &mut Client, channel: &str, text: &str) -> Value {
    client
        .send_request("message", json!({ "channel": channel, "message": text }))
        .await;
    client.recv_type_or_error().await
}

async fn listed_words_are_masked_for_everyone_and_names_refused() {
    let server = moderated_server().await;
    let mut ann = server.named("Ann").await;
    let mut bob = server.named("Bob").await;
    ann.join("lobby").await;
    bob.join("lobby").await;
    for (sent, seen) in [
        ("Darn it", "**** it"),
        ("a class act, darnit", "a class act, darnit"),
        ("that is VERY BAD", "that is **** ***"),
        ("ты дурак", "ты *****"),
        ("你是笨蛋吗", "你是**吗"),
    ] {
        let ack = say(&mut ann, "lobby", sent).await;
        assert_eq!(ack["message"], format!("Message sent to lobby: {seen}"));
        let got = bob.recv_type("chat_message_received").await;
        assert_eq!(got["payload"]["message"], seen, "{sent}");
    }
    bob.send_request("set-name", json!({ "username": "Darn Bot" }))
        .await;
    assert_eq!(bob.recv_type_or_error().await["code"], "bad_name");
    bob.send_request("set-name", json!({ "username": "darn" }))
        .await;
    let refused = bob.recv_type_or_error().await;
    assert_eq!(refused["code"], "bad_name");
    assert_eq!(
        refused["error"],
        "Invalid username: That name is not allowed"
    );
}

async fn a_muted_user_cannot_send_until_unmuted_even_after_reconnecting() {
    let server = moderated_server().await;
    let login = server.login().await;
    let mut ann = server.connect(&login.auth_token).await;
    ann.expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    ann.set_name("Ann").await;
    ann.join("lobby").await;
    let mut bob = server.named("Bob").await;
    bob.join("lobby").await;

    let (status, body) = admin(
        &server,
        "mute",
        json!({ "user_id": login.user_id, "reason": "spam" }),
    )
    .await;
    assert_eq!((status, &body["ok"]), (200, &json!(true)), "{body}");
    // With Redis the node applies the mute when its pub/sub copy arrives: moments later.
    let refused = until_refused(&mut ann, "buy gold").await;
    assert_eq!(refused["error"], "You are muted: spam");
    bob.send_request("direct", json!({ "to": login.user_id, "message": "hi" }))
        .await;
    assert!(
        bob.recv_type_or_error().await["message"].is_string(),
        "others are not affected"
    );

    // A new connection of the same user is muted too.
    drop(ann);
    let mut again = server.connect(&login.auth_token).await;
    again
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    again.join("lobby").await;
    assert_eq!(
        say(&mut again, "lobby", "still here").await["code"],
        "forbidden"
    );

    admin(&server, "unmute", json!({ "user_id": login.user_id })).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while say(&mut again, "lobby", "sorry").await["message"] != "Message sent to lobby: sorry" {
        assert!(Instant::now() < deadline, "the unmute never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends to `lobby` until the server refuses (a mute taking effect); the refusal.
async fn until_refused(client: &mut Client, text: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = say(client, "lobby", text).await;
        if reply["code"] == "forbidden" {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "the mute never took effect: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_mute_with_a_length_ends_by_itself() {
    let server = moderated_server().await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let (status, _) = admin(
        &server,
        "mute",
        json!({ "user_id": ann.user_id, "seconds": 1 }),
    )
    .await;
    assert_eq!(status, 200);
    let refused = until_refused(&mut ann, "x").await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("You are muted (1 s left"),
        "{refused}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if say(&mut ann, "lobby", "back").await["message"] == "Message sent to lobby: back" {
            break;
        }
        assert!(Instant::now() < deadline, "the mute never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_kicked_user_is_told_why_and_may_come_back() {
    let server = moderated_server().await;
    let login = server.login().await;
    let mut first = server.connect(&login.auth_token).await;
    let mut second = server.connect(&login.auth_token).await;
    for client in [&mut first, &mut second] {
        client
            .expect_text(r#"{"message":"Successfully connected!"}"#)
            .await;
    }
    let mut bob = server.named("Bob").await;
    admin(
        &server,
        "kick",
        json!({ "user_id": login.user_id, "reason": "cool down" }),
    )
    .await;
    for client in [&mut first, &mut second] {
        let told = client.recv_type_or_error().await;
        assert_eq!(
            told,
            json!({ "error": "You were kicked: cool down", "code": "forbidden" })
        );
        assert_eq!(
            client.expect_close().await,
            Some((1008, "kicked by a moderator".into()))
        );
    }
    bob.sync().await;
    let mut back = server.connect(&login.auth_token).await;
    back.expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
}

async fn a_banned_user_is_closed_and_refused_until_unbanned() {
    let server = moderated_server().await;
    let login = server.login().await;
    let mut ann = server.connect(&login.auth_token).await;
    ann.expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    admin(
        &server,
        "ban",
        json!({ "user_id": login.user_id, "reason": "cheating" }),
    )
    .await;
    let told = ann.recv_type_or_error().await;
    assert_eq!(told["error"], "You are banned: cheating");
    assert_eq!(
        ann.expect_close().await,
        Some((1008, "banned by a moderator".into()))
    );

    let mut refused = server.connect(&login.auth_token).await;
    let reply = refused.recv().await;
    assert_eq!(
        reply,
        json!({ "error": "You are banned: cheating", "code": "forbidden" })
    );
    assert_eq!(refused.expect_close().await.map(|c| c.0), Some(1008));

    admin(&server, "unban", json!({ "user_id": login.user_id })).await;
    let mut back = server.connect(&login.auth_token).await;
    back.expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains(r#"chat_closes_total{reason="banned"} 2"#),
        "{metrics}"
    );
}

async fn bad_admin_requests_are_refused_clearly() {
    let server = moderated_server().await;
    let cases = [
        (
            "mute",
            json!({ "user_id": "" }),
            400,
            "user_id must be a user id",
        ),
        (
            "mute",
            json!({ "user_id": "u", "seconds": 0 }),
            400,
            "seconds must be at least 1",
        ),
        (
            "ban",
            json!({ "user_id": "u", "reason": "x".repeat(201) }),
            400,
            "reason: at most 200",
        ),
        (
            "smite",
            json!({ "user_id": "u" }),
            404,
            "no admin action \"smite\"",
        ),
        ("kick", json!({ "user": "u" }), 400, "unknown field"),
    ];
    for (action, body, status, text) in cases {
        let (got, reply) = admin(&server, action, body).await;
        assert_eq!(got, status, "{action}: {reply}");
        assert!(
            reply["error"].as_str().unwrap_or("").contains(text),
            "{action}: {reply}"
        );
    }
    let (status, _) = server
        .post("/admin/mute", Some("wrong"), json!({ "user_id": "u" }))
        .await;
    assert_eq!(status, 401);
}

async fn moderation_reaches_every_node() {
    let a = moderated_server().await;
    let b = a.start_node(|c| c.word_filter = None).await;
    let login = a.login().await;
    let mut on_b = b.connect(&login.auth_token).await;
    on_b.expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    on_b.set_name("Ann").await;
    on_b.join("lobby").await;

    // Node A sees where the player is though it is connected to B only.
    let (status, body) = a
        .admin_get(
            &format!("/admin/players/{}", login.user_id),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let player: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        player["online_nodes"].as_array().unwrap().len(),
        1,
        "{player}"
    );
    assert_eq!(player["channels"], json!(["lobby"]), "{player}");
    assert_eq!(player["connections_here"], 0, "{player}");
    // Muted through node A: refused on node B.
    admin(&a, "mute", json!({ "user_id": login.user_id })).await;
    until_refused(&mut on_b, "hello").await;
    // Banned through A: closed on B, and B refuses the next connection.
    admin(&a, "ban", json!({ "user_id": login.user_id })).await;
    assert_eq!(on_b.recv_type_or_error().await["error"], "You are banned");
    assert_eq!(on_b.expect_close().await.map(|c| c.0), Some(1008));
    let mut refused = b.connect(&login.auth_token).await;
    assert_eq!(refused.recv().await["error"], "You are banned");
    // Both actions were taken on A; B reads the same audit log.
    let log = audit(&b, "").await;
    let actions: Vec<&str> = entries(&log)
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["ban", "mute"]);
}

/// `GET /admin/audit{query}` with the admin token: the reply, after checking it is a 200.
async fn audit(server: &TestServer, query: &str) -> Value {
    let (status, body) = server
        .admin_get(&format!("/admin/audit{query}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn entries(page: &Value) -> &Vec<Value> {
    page["entries"].as_array().unwrap()
}

async fn every_admin_action_is_in_the_audit_log_newest_first_in_pages() {
    let server = moderated_server().await;
    let user = server.login().await.user_id;
    let (status, reply) = admin(
        &server,
        "mute",
        json!({ "user_id": user, "seconds": 600, "reason": "spam" }),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["audit_id"].is_string(), "{reply}");
    admin(&server, "ban", json!({ "user_id": user })).await;
    // From the console (it says so in a header).
    let url = format!("{}/admin/unban", server.http());
    let headers = vec![
        ("Authorization".to_owned(), format!("Bearer {ADMIN_TOKEN}")),
        ("X-Admin-Client".to_owned(), "console".to_owned()),
    ];
    let (status, _) = http_send(url, headers, Some(json!({ "user_id": user }))).await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post(
            "/admin/broadcast",
            Some(ADMIN_TOKEN),
            json!({ "message": "maintenance at noon" }),
        )
        .await;
    assert_eq!(status, 200);
    // A refused request is not an action: not in the log.
    admin(&server, "mute", json!({ "user_id": "" })).await;

    let first = audit(&server, "?limit=3").await;
    let shown: Vec<(&str, &str, &str)> = entries(&first)
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["via"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("broadcast", "*", "api"),
            ("unban", user.as_str(), "console"),
            ("ban", user.as_str(), "api"),
        ]
    );
    assert_eq!(entries(&first)[0]["reason"], "maintenance at noon");
    assert!(entries(&first).iter().all(|e| e["result"] == "ok"));
    assert!(entries(&first).iter().all(|e| e["address"] == "127.0.0.1"));
    let next = first["next"].as_str().expect("a next page");
    let second = audit(&server, &format!("?before={next}&limit=3")).await;
    let mute = &entries(&second)[0];
    assert_eq!(entries(&second).len(), 1, "{second}");
    assert_eq!(
        (&mute["action"], &mute["reason"], &mute["seconds"]),
        (&json!("mute"), &json!("spam"), &json!(600))
    );
    assert!(second.get("next").is_none(), "{second}");
    let id = |text: &str| text.parse::<protocol::MessageId>().unwrap();
    assert!(
        id(mute["id"].as_str().unwrap()) < id(next),
        "{mute} then {next}"
    );

    // Bad pages and tokens are refused, saying why.
    for (query, text) in [
        ("?limit=0", "limit: from 1 to 500"),
        ("?limit=501", "limit: from 1 to 500"),
        ("?before=yesterday", "before:"),
        ("?page=2", "unknown field"),
    ] {
        let (status, body) = server
            .admin_get(&format!("/admin/audit{query}"), Some(ADMIN_TOKEN))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(text), "{query}: {body}");
    }
    assert_eq!(server.admin_get("/admin/audit", Some("wrong")).await.0, 401);
    assert_eq!(server.admin_get("/admin/audit", None).await.0, 401);
}

/// A game's own review: no links in chat.
struct NoLinks;

impl Moderator for NoLinks {
    fn review(&self, _: &Principal, target: Target<'_>, text: &str) -> Review {
        if target != Target::Name && text.contains("http") {
            Review::Reject("Links are not allowed here".into())
        } else {
            Review::Pass
        }
    }
}

#[tokio::test]
async fn a_game_can_plug_in_its_own_moderator() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let hooks = server::Hooks {
        moderator: Some(Arc::new(NoLinks)),
        ..Default::default()
    };
    let server = TestServer::start_hooked(config, dir, hooks).await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let refused = say(&mut ann, "lobby", "see http://scam.example").await;
    assert_eq!(
        refused,
        json!({ "error": "Links are not allowed here", "code": "forbidden" })
    );
    assert_eq!(
        say(&mut ann, "lobby", "gg").await["message"],
        "Message sent to lobby: gg"
    );
}

/// A game's hook with a bug: it panics on one word.
struct Buggy;

impl Moderator for Buggy {
    fn review(&self, _: &Principal, _: Target<'_>, text: &str) -> Review {
        assert!(text != "boom", "a bug in the game's moderator");
        Review::Pass
    }
}

#[tokio::test]
async fn a_panic_in_a_session_closes_that_connection_and_leaves_no_ghost() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = server::Hooks {
        moderator: Some(Arc::new(Buggy)),
        ..Default::default()
    };
    let server = TestServer::start_hooked(test_config(dir.path()), dir, hooks).await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let mut bob = server.named("Bob").await;
    bob.join("lobby").await;
    ann.recv_type("user_joined").await;

    bob.send_request("message", json!({ "channel": "lobby", "message": "boom" }))
        .await;
    // Bob is told and closed; Ann sees him leave; the server goes on.
    assert_eq!(
        bob.expect_close().await,
        Some((1011, "internal error".into()))
    );
    let left = ann.recv_type("user_left").await;
    assert_eq!(left["payload"]["channel"], "lobby");
    assert_eq!(left["payload"]["username"], "Bob");
    assert_eq!(
        say(&mut ann, "lobby", "still here").await["message"],
        "Message sent to lobby: still here"
    );
    let (_, metrics) = server.get("/metrics").await;
    for line in [
        "chat_connections 1\n",
        "chat_closes_total{reason=\"internal_error\"} 1\n",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    ann.send_request("who", json!({ "channel": "lobby" })).await;
    let users = ann.recv_type("presence").await["payload"]["users"].clone();
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
    assert_eq!(users[0]["username"], "Ann");
}
