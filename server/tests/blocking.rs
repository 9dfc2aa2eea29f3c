//! Blocking over real connections (issue 13): a user who blocks another no longer receives its
//! channel messages, typing indicators, direct messages or history entries, on every connection
//! and after reconnecting, while everyone else still does; the sender is not told. On both
//! engines, and across two nodes sharing one Redis.

mod common;

use common::cluster::*;
use common::*;
use serde_json::{Value, json};
use server::config::EngineKind;
use tokio::time::Instant;

per_engine!(
    a_blocker_stops_receiving_the_blocked_users_messages,
    the_block_list_survives_reconnecting_until_unblocked,
    history_leaves_out_blocked_users,
    the_block_limit_answers_too_many_blocks,
    bad_block_requests_are_refused_clearly,
);

/// Two Redis nodes (a separate test: `redis_only!` would clash with `per_engine!`'s module).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reaches_every_node_on_redis() {
    run_redis("blocking::every_node", blocking_reaches_every_node()).await;
}

/// A node whose pub/sub connection dropped reads the block lists of its users again: a change
/// it missed meanwhile applies (on a private redis-server, whose pub/sub clients it kills).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_lists_are_read_again_after_a_pubsub_outage() {
    let Some(redis) = private_redis("blocking::after_a_pubsub_outage").await else {
        return;
    };
    let url = redis.url();
    let TestEngine::Redis { prefix } = TestEngine::fresh_redis() else {
        unreachable!()
    };
    let server = TestServer::start_on(&TestEngine::Memory, |c| {
        fast(c);
        c.engine.kind = Some(EngineKind::Redis);
        c.engine.redis_url = Some(url.clone());
        c.engine.redis_prefix = prefix.clone();
    })
    .await;
    let (mut ann, _) = user(&server, "Ann").await;
    let (mut bob, _) = user(&server, "Bob").await;
    let (mut carol, _) = user(&server, "Carol").await;
    for client in [&mut ann, &mut bob, &mut carol] {
        client.join("lobby").await;
    }

    // A change the node misses: written into Redis without being published.
    let mut conn = redis_connection(&url).await;
    let keys = server::engine::RedisKeys::new(&prefix);
    let _: () = ::redis::pipe()
        .sadd(keys.blocks(&ann.user_id), &bob.user_id)
        .incr(keys.block_version(&ann.user_id), 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    say(&mut bob, "lobby", "unknown yet").await;
    assert_eq!(next_text(&mut ann).await, "unknown yet");
    assert_eq!(next_text(&mut carol).await, "unknown yet");

    // The node's pub/sub connection drops; once it is back, Bob's messages skip Ann.
    let killed: i64 = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    let deadline = Instant::now() + SLOW;
    for n in 0.. {
        assert!(
            Instant::now() < deadline,
            "the block list was not read again"
        );
        let (probe, mark) = (format!("probe {n}"), format!("mark {n}"));
        say(&mut bob, "lobby", &probe).await;
        assert_eq!(next_text(&mut carol).await, probe);
        say(&mut carol, "lobby", &mark).await;
        assert_eq!(next_text(&mut bob).await, mark);
        let seen = next_text(&mut ann).await;
        if seen == mark {
            break;
        }
        assert_eq!((seen, next_text(&mut ann).await), (probe, mark));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(redis);
}

/// A named user's connection, and its token (to connect again as the same user).
async fn user(server: &TestServer, name: &str) -> (Client, String) {
    let login = server.login().await;
    let client = reconnect(server, &login.auth_token, &login.user_id).await;
    let mut client = client;
    client.set_name(name).await;
    (client, login.auth_token)
}

/// Another connection of the user behind `token` (the welcome read).
async fn reconnect(server: &TestServer, token: &str, user_id: &str) -> Client {
    let mut client = server.connect(token).await;
    client.user_id = user_id.to_owned();
    client
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    client
}

/// Waits until `server` has `count` connections open (a dropped one is gone from its hub, so the
/// next connection of that user reads the block list afresh).
async fn until_connections(server: &TestServer, count: u64) {
    let line = format!("chat_connections {count}");
    eventually(&line, || async {
        let (_, metrics) = server.get("/metrics").await;
        metrics.lines().any(|l| l == line)
    })
    .await;
}

/// Sends a block request and returns the ack and the `blocked_users` list that follows.
async fn request(client: &mut Client, kind: &str, target: &str) -> (Value, Vec<String>) {
    client
        .send(json!({"type": kind, "payload": {"user_id": target}, "ref": kind}))
        .await;
    let ack = client.recv_type_or_error().await;
    let list = client.recv_type("blocked_users").await;
    assert_eq!(list["ref"], kind, "{list}");
    (ack, ids(&list))
}

/// Blocks `target` and checks the ack; returns the list.
async fn block(client: &mut Client, target: &str) -> Vec<String> {
    let (ack, list) = request(client, "block", target).await;
    assert_eq!(
        ack,
        json!({"message": format!("You have blocked {target}"), "ref": "block"})
    );
    list
}

/// Unblocks `target` and checks the ack; returns the list.
async fn unblock(client: &mut Client, target: &str) -> Vec<String> {
    let (ack, list) = request(client, "unblock", target).await;
    assert_eq!(
        ack,
        json!({"message": format!("You have unblocked {target}"), "ref": "unblock"})
    );
    list
}

/// The `blocked` answer.
async fn blocked(client: &mut Client) -> Vec<String> {
    client.send(json!({"type": "blocked", "ref": "b"})).await;
    let list = client.recv_type("blocked_users").await;
    assert_eq!(list["ref"], "b");
    ids(&list)
}

fn ids(list: &Value) -> Vec<String> {
    list["payload"]["user_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no user_ids: {list}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// The next chat message `client` receives, skipping presence events.
async fn next_text(client: &mut Client) -> String {
    let message = client.recv_type("chat_message_received").await;
    message["payload"]["message"].as_str().unwrap().to_owned()
}

/// Sends `typing` (no reply on success).
async fn typing(client: &mut Client, channel: &str) {
    client
        .send_request("typing", json!({ "channel": channel }))
        .await;
}

/// The user id of the next `user_typing` `client` receives, skipping other events.
async fn next_typist(client: &mut Client) -> String {
    let typing = client.recv_type("user_typing").await;
    typing["payload"]["user_id"].as_str().unwrap().to_owned()
}

/// The sender of the next direct message `client` receives.
async fn next_direct_from(client: &mut Client) -> String {
    let direct = client.recv_type("direct_message_received").await;
    direct["payload"]["from"].as_str().unwrap().to_owned()
}

/// Sends a direct message and checks the usual ack.
async fn direct(from: &mut Client, to: &str, text: &str) {
    from.send_request("direct", json!({"to": to, "message": text}))
        .await;
    assert_eq!(
        from.recv_type_or_error().await,
        json!({"message": format!("Direct message sent to {to}")})
    );
}

async fn a_blocker_stops_receiving_the_blocked_users_messages() {
    let server = TestServer::start_with(fast).await;
    let (mut ann, _) = user(&server, "Ann").await;
    let (mut bob, _) = user(&server, "Bob").await;
    let (mut carol, _) = user(&server, "Carol").await;
    for client in [&mut ann, &mut bob, &mut carol] {
        client.join("lobby").await;
    }
    let bob_id = bob.user_id.clone();
    assert_eq!(block(&mut ann, &bob_id).await, vec![bob_id.clone()]);

    // Bob's message reaches Carol (and Bob), not Ann: Ann's next message is Carol's.
    say(&mut bob, "lobby", "from bob").await;
    assert_eq!(next_text(&mut carol).await, "from bob");
    say(&mut carol, "lobby", "from carol").await;
    assert_eq!(next_text(&mut ann).await, "from carol");
    assert_eq!(next_text(&mut bob).await, "from carol");

    // Bob's typing indicator reaches Carol, not Ann: Ann's next one is Carol's.
    typing(&mut bob, "lobby").await;
    assert_eq!(next_typist(&mut carol).await, bob_id);
    typing(&mut carol, "lobby").await;
    assert_eq!(next_typist(&mut ann).await, carol.user_id);

    // Bob's direct message: Bob gets the usual ack, Ann nothing; Carol's still arrives.
    direct(&mut bob, &ann.user_id, "psst").await;
    direct(&mut carol, &ann.user_id, "hi").await;
    assert_eq!(next_direct_from(&mut ann).await, carol.user_id);

    // Ann's own messages still reach Bob: blocking is one way.
    say(&mut ann, "lobby", "from ann").await;
    assert_eq!(next_text(&mut bob).await, "from ann");

    // Unblocking restores delivery.
    assert_eq!(unblock(&mut ann, &bob_id).await, Vec::<String>::new());
    say(&mut bob, "lobby", "bob again").await;
    assert_eq!(next_text(&mut ann).await, "bob again");
    direct(&mut bob, &ann.user_id, "back").await;
    assert_eq!(next_direct_from(&mut ann).await, bob_id);
}

async fn the_block_list_survives_reconnecting_until_unblocked() {
    let server = TestServer::start_with(fast).await;
    let (mut ann, ann_token) = user(&server, "Ann").await;
    let (mut bob, _) = user(&server, "Bob").await;
    let (mut carol, _) = user(&server, "Carol").await;
    let (bob_id, carol_id) = (bob.user_id.clone(), carol.user_id.clone());
    block(&mut ann, &bob_id).await;
    let mut both = vec![bob_id.clone(), carol_id.clone()];
    both.sort();
    assert_eq!(block(&mut ann, &carol_id).await, both);
    assert_eq!(unblock(&mut ann, &carol_id).await, vec![bob_id.clone()]);
    let ann_id = ann.user_id.clone();
    drop(ann);
    until_connections(&server, 2).await;

    // A new connection (the user's only one) reads the list again when it opens (asked for
    // only afterwards: `blocked` would bring the list too).
    let mut ann = reconnect(&server, &ann_token, &ann_id).await;
    for client in [&mut ann, &mut bob, &mut carol] {
        client.join("lobby").await;
    }
    say(&mut bob, "lobby", "from bob").await;
    assert_eq!(next_text(&mut carol).await, "from bob");
    say(&mut carol, "lobby", "from carol").await;
    assert_eq!(next_text(&mut ann).await, "from carol");
    assert_eq!(next_text(&mut bob).await, "from carol");
    assert_eq!(blocked(&mut ann).await, vec![bob_id.clone()]);

    // A second connection shares the list; an unblock from one reaches both.
    let mut ann2 = reconnect(&server, &ann_token, &ann_id).await;
    ann2.join("lobby").await;
    say(&mut bob, "lobby", "bob 2").await;
    assert_eq!(next_text(&mut carol).await, "bob 2");
    say(&mut carol, "lobby", "carol 2").await;
    assert_eq!(next_text(&mut ann2).await, "carol 2");
    assert_eq!(next_text(&mut bob).await, "carol 2");
    unblock(&mut ann2, &bob_id).await;
    assert_eq!(blocked(&mut ann).await, Vec::<String>::new());
    say(&mut bob, "lobby", "bob 3").await;
    for client in [&mut ann, &mut ann2] {
        // (ann skips "carol 2", still queued)
        let mut text = next_text(client).await;
        if text == "carol 2" {
            text = next_text(client).await;
        }
        assert_eq!(text, "bob 3");
    }
}

async fn history_leaves_out_blocked_users() {
    let server = TestServer::start_with(fast).await;
    let (mut ann, ann_token) = user(&server, "Ann").await;
    let (mut bob, _) = user(&server, "Bob").await;
    let (mut carol, _) = user(&server, "Carol").await;
    for client in [&mut ann, &mut bob, &mut carol] {
        client.join("lobby").await;
    }
    // Each speaker has the other's message before speaking (on Redis it may otherwise arrive
    // after the speaker's acknowledgement, where `say` expects its own copy).
    for n in 1..=2 {
        let (c, b) = (format!("c{n}"), format!("b{n}"));
        say(&mut carol, "lobby", &c).await;
        assert_eq!(next_text(&mut bob).await, c);
        say(&mut bob, "lobby", &b).await;
        assert_eq!(next_text(&mut carol).await, b);
    }
    say(&mut carol, "lobby", "c3").await;
    let bob_id = bob.user_id.clone();
    block(&mut ann, &bob_id).await;

    // A page of 4 holds the 4 newest minus Bob's; `more` still says older ones are kept.
    ann.send(json!({"type": "history", "payload": {"channel": "lobby", "limit": 4}, "ref": 1}))
        .await;
    let page = ann.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), ["c2", "c3"]);
    assert_eq!(page["payload"]["more"], true);
    // Bob sees everything.
    bob.send_request("history", json!({"channel": "lobby"}))
        .await;
    let page = bob.recv_type("history").await;
    assert_eq!(
        texts(&page["payload"]["messages"]),
        ["c1", "b1", "c2", "b2", "c3"]
    );

    // History on join, on a new connection, is filtered too.
    let mut ann2 = reconnect(&server, &ann_token, &ann.user_id).await;
    ann2.send_request("join", json!({"channel": "lobby", "history": 10}))
        .await;
    let page = ann2.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), ["c1", "c2", "c3"]);
}

async fn the_block_limit_answers_too_many_blocks() {
    let server = TestServer::start_with(|c| {
        fast(c);
        c.limits.max_blocks = 2;
    })
    .await;
    let (mut ann, _) = user(&server, "Ann").await;
    block(&mut ann, "u1").await;
    assert_eq!(block(&mut ann, "u2").await, ["u1", "u2"]);
    ann.send(json!({"type": "block", "payload": {"user_id": "u3"}, "ref": 3}))
        .await;
    assert_eq!(
        ann.recv().await,
        json!({"error": "You have blocked 2 users already, unblock one first", "code": "too_many_blocks", "ref": 3})
    );
    // Blocking a user blocked already is no new block; after an unblock there is room again.
    assert_eq!(block(&mut ann, "u1").await, ["u1", "u2"]);
    unblock(&mut ann, "u1").await;
    assert_eq!(block(&mut ann, "u3").await, ["u2", "u3"]);

    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains(r#"chat_limit_hits_total{limit="blocks"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"chat_errors_total{code="too_many_blocks"} 1"#),
        "{metrics}"
    );
}

async fn bad_block_requests_are_refused_clearly() {
    let server = TestServer::start_with(fast).await;
    let (mut ann, _) = user(&server, "Ann").await;
    let ann_id = ann.user_id.clone();
    for (payload, error) in [
        (json!({"user_id": ann_id}), "You cannot block yourself"),
        (json!({"user_id": ""}), "Invalid user id: must not be empty"),
        (
            json!({"user_id": "a\u{7}b"}),
            "Invalid user id: must not contain control characters",
        ),
        (
            json!({"user_id": "x".repeat(129)}),
            "Invalid user id: longer than 128 bytes",
        ),
    ] {
        ann.send(json!({"type": "block", "payload": payload, "ref": "r"}))
            .await;
        assert_eq!(
            ann.recv().await,
            json!({"error": error, "code": "bad_request", "ref": "r"})
        );
    }
    ann.send(json!({"type": "block", "payload": {"user": "u1"}}))
        .await;
    let error = ann.recv().await;
    assert_eq!(error["code"], "bad_request", "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("missing field `user_id`"),
        "{error}"
    );
    ann.send(json!({"type": "unblock", "payload": {"user_id": ""}}))
        .await;
    assert_eq!(ann.recv().await["code"], "bad_request");
    // Nothing was recorded.
    assert_eq!(blocked(&mut ann).await, Vec::<String>::new());
}

async fn blocking_reaches_every_node() {
    let a = TestServer::start_with(fast).await;
    let b = a.start_node(|_| {}).await;
    // Ann and Carol on A; Bob on B, and a second connection of Ann on B.
    let (mut ann, ann_token) = user(&a, "Ann").await;
    let (mut carol, _) = user(&a, "Carol").await;
    let (mut bob, _) = user(&b, "Bob").await;
    let ann_id = ann.user_id.clone();
    let mut ann_b = reconnect(&b, &ann_token, &ann_id).await;
    for client in [&mut ann, &mut carol, &mut bob, &mut ann_b] {
        client.join("lobby").await;
    }
    let bob_id = bob.user_id.clone();
    block(&mut ann, &bob_id).await;

    // Bob's message (on B) reaches Carol on A, but neither of Ann's connections.
    say(&mut bob, "lobby", "from bob").await;
    assert_eq!(next_text(&mut carol).await, "from bob");
    say(&mut carol, "lobby", "from carol").await;
    assert_eq!(next_text(&mut ann).await, "from carol");
    assert_eq!(next_text(&mut ann_b).await, "from carol");
    typing(&mut bob, "lobby").await;
    assert_eq!(next_typist(&mut carol).await, bob_id);
    typing(&mut carol, "lobby").await;
    assert_eq!(next_typist(&mut ann).await, carol.user_id);
    assert_eq!(next_typist(&mut ann_b).await, carol.user_id);

    // Bob's direct message to Ann: acknowledged, delivered to neither connection.
    direct(&mut bob, &ann_id, "psst").await;
    direct(&mut carol, &ann_id, "hi").await;
    assert_eq!(next_direct_from(&mut ann).await, carol.user_id);
    assert_eq!(next_direct_from(&mut ann_b).await, carol.user_id);

    // Ann's last connection on B closes; a new one there reads the list from Redis.
    drop(ann_b);
    until_connections(&b, 1).await;
    let mut ann_b = reconnect(&b, &ann_token, &ann_id).await;
    ann_b.join("lobby").await;
    say(&mut bob, "lobby", "bob 2").await;
    // Carol (on A) has it before she speaks, so her own copy comes next.
    assert_eq!(next_text(&mut carol).await, "bob 2");
    say(&mut carol, "lobby", "carol 2").await;
    assert_eq!(next_text(&mut ann_b).await, "carol 2");
    assert_eq!(next_text(&mut bob).await, "carol 2");
    assert_eq!(blocked(&mut ann_b).await, vec![bob_id.clone()]);

    // Unblocked through B: delivery resumes on A too.
    unblock(&mut ann_b, &bob_id).await;
    say(&mut bob, "lobby", "bob 3").await;
    for client in [&mut ann, &mut ann_b] {
        let mut text = next_text(client).await;
        if text == "carol 2" {
            text = next_text(client).await;
        }
        assert_eq!(text, "bob 3");
    }
}
