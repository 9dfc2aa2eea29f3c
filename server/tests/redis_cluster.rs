//! The Redis engine with many nodes: two nodes in this process sharing one Redis, and again a
//! Redis Cluster (`redis_cluster::` variants), share every kind of message (each test under its
//! own key prefix), different prefixes stay apart, and the users of a dead node leave presence. Without Redis these tests skip, except under `CI=true`, where
//! they fail. (Subscriptions: `redis_subscriptions`; a Redis restart: `redis_restart`.)

mod common;

use std::time::Duration;

use ::redis::AsyncCommands;
use common::cluster::*;
use common::redis_cluster::EngineConnection;
use common::*;
use serde_json::{Value, json};
use server::config::Config;
use tokio::time::Instant;

cluster_only!(
    two_nodes_share_every_kind_of_message,
    users_of_a_dead_node_leave_presence,
);

redis_only!(
    two_nodes_share_every_kind_of_message,
    different_prefixes_are_isolated,
    users_of_a_dead_node_leave_presence,
);

const WELCOME: &str = r#"{"message":"Successfully connected!"}"#;

fn presence(kind: &str, channel: &str, user_id: &str, username: &str) -> Value {
    json!({"type": kind, "payload": {"channel": channel, "user_id": user_id, "username": username}})
}

fn joined(channel: &str, client: &Client, username: &str) -> Value {
    presence("user_joined", channel, &client.user_id, username)
}

/// `who` on `channel`: (user id, name) pairs, sorted.
async fn who(client: &mut Client, channel: &str) -> Vec<(String, String)> {
    client
        .send(json!({"type": "who", "payload": {"channel": channel}, "ref": "who"}))
        .await;
    let list = client.recv_type("presence").await;
    assert_eq!(list["ref"], "who");
    presence_users(&list["payload"]["users"])
}

async fn two_nodes_share_every_kind_of_message() {
    let a = TestServer::start_with(|c| {
        fast(c);
        c.admin_token = Some(ADMIN_TOKEN.into());
        c.engine.unique_names = true;
    })
    .await;
    let b = a.start_node(|_| {}).await;

    // Ann on A; Carol on B; Bob logs in on B and has a connection on each node (a token of one
    // node is good on the other). Bob's name is set through B.
    let mut ann = a.named("Ann").await;
    let mut carol = b.named("Carol").await;
    let bob_login = b.login().await;
    let mut bob_b = b.connect(&bob_login.auth_token).await;
    bob_b.user_id = bob_login.user_id.clone();
    bob_b.expect_text(WELCOME).await;
    let mut bob_a = a.connect(&bob_login.auth_token).await;
    bob_a.user_id = bob_login.user_id.clone();
    bob_a.expect_text(WELCOME).await;
    bob_b.set_name("Bob").await;

    // Joins: user_joined crosses nodes, once per user however many nodes it joins from.
    ann.join("lobby").await;
    ann.expect(joined("lobby", &ann, "Ann")).await;
    bob_b.join("lobby").await;
    bob_b.expect(joined("lobby", &bob_b, "Bob")).await;
    ann.expect(joined("lobby", &bob_b, "Bob")).await;
    bob_a.join("lobby").await; // Bob is present already (on B): nobody is told.
    carol.join("lobby").await;
    let carol_joined = joined("lobby", &carol, "Carol");
    for client in [&mut carol, &mut ann, &mut bob_a, &mut bob_b] {
        client.expect(carol_joined.clone()).await;
    }

    // Messages, both ways: every member on both nodes, the sender included, gets the same frame.
    let own = say(&mut ann, "lobby", "hello from A").await;
    assert_eq!(own["payload"]["username"], "Ann");
    assert_eq!(own["payload"]["user_id"], ann.user_id.as_str());
    for client in [&mut bob_a, &mut bob_b, &mut carol] {
        client.expect(own.clone()).await;
    }
    let own = say(&mut bob_b, "lobby", "hello from B").await;
    assert_eq!(own["payload"]["username"], "Bob");
    for client in [&mut ann, &mut bob_a, &mut carol] {
        client.expect(own.clone()).await;
    }
    // The name Bob set through B is his on A too.
    let own = say(&mut bob_a, "lobby", "Bob again, through A").await;
    assert_eq!(own["payload"]["username"], "Bob");
    for client in [&mut ann, &mut bob_b, &mut carol] {
        client.expect(own.clone()).await;
    }

    // `who` on either node lists the users of both, each once.
    let mut everyone = vec![
        (ann.user_id.clone(), "Ann".to_owned()),
        (bob_login.user_id.clone(), "Bob".to_owned()),
        (carol.user_id.clone(), "Carol".to_owned()),
    ];
    everyone.sort();
    assert_eq!(who(&mut bob_b, "lobby").await, everyone);
    assert_eq!(who(&mut ann, "lobby").await, everyone);

    // Direct messages: from A to every connection of Bob (one on A, one on B); from B to A.
    ann.send(json!({"type": "direct", "payload": {"to": bob_login.user_id, "message": "psst"}, "ref": 1}))
        .await;
    ann.expect(
        json!({"message": format!("Direct message sent to {}", bob_login.user_id), "ref": 1}),
    )
    .await;
    let on_b = bob_b.recv().await;
    let on_a = bob_a.recv().await;
    assert_eq!(on_a, on_b);
    assert_eq!(on_b["type"], "direct_message_received");
    assert_eq!(on_b["payload"]["from"], ann.user_id.as_str());
    assert_eq!(on_b["payload"]["username"], "Ann");
    assert_eq!(on_b["payload"]["message"], "psst");
    carol
        .send_request("direct", json!({"to": ann.user_id, "message": "hi Ann"}))
        .await;
    carol
        .expect(json!({"message": format!("Direct message sent to {}", ann.user_id)}))
        .await;
    let direct = ann.recv().await;
    assert_eq!(direct["type"], "direct_message_received");
    assert_eq!(direct["payload"]["from"], carol.user_id.as_str());
    assert_eq!(direct["payload"]["message"], "hi Ann");
    carol
        .send_request(
            "direct",
            json!({"to": "nobody-anywhere", "message": "hello?"}),
        )
        .await;
    carol
        .expect(json!({"error": "User nobody-anywhere is not online", "code": "not_found"}))
        .await;

    // History written through A, read on B: `history` on join, `since`, paging back.
    ann.join("hist").await;
    ann.expect(joined("hist", &ann, "Ann")).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let own = say(&mut ann, "hist", &format!("h-{n}")).await;
        ids.push(own["payload"]["id"].as_str().unwrap().to_owned());
    }
    let mut dave = b.named("Dave").await;
    dave.send(json!({"type": "join", "payload": {"channel": "hist", "history": 3}, "ref": 9}))
        .await;
    dave.expect(json!({"message": "You have joined hist", "ref": 9}))
        .await;
    let history = dave.recv_type("history").await;
    assert_eq!(history["ref"], 9);
    assert_eq!(
        texts(&history["payload"]["messages"]),
        ["h-2", "h-3", "h-4"]
    );
    assert_eq!(history["payload"]["more"], true);
    assert_eq!(history["payload"]["messages"][2]["id"], ids[4].as_str());
    let mut erin = b.named("Erin").await;
    erin.send_request("join", json!({"channel": "hist", "since": ids[1]}))
        .await;
    erin.expect(json!({"message": "You have joined hist"}))
        .await;
    let history = erin.recv_type("history").await;
    assert_eq!(
        texts(&history["payload"]["messages"]),
        ["h-2", "h-3", "h-4"]
    );
    assert!(history["payload"].get("gap").is_none(), "{history}");
    erin.send_request(
        "history",
        json!({"channel": "hist", "before": ids[2], "limit": 5}),
    )
    .await;
    let page = erin.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), ["h-0", "h-1"]);
    // Live traffic through A follows the replay on B.
    let own = say(&mut ann, "hist", "h-live").await;
    for client in [&mut dave, &mut erin] {
        let live = client.recv_type("chat_message_received").await;
        assert_eq!(live, own);
    }

    // An operator broadcast on A reaches every connection on both nodes.
    let (status, body) = a
        .post(
            "/admin/broadcast",
            Some(ADMIN_TOKEN),
            json!({"message": "maintenance at noon"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for client in [
        &mut ann, &mut bob_a, &mut bob_b, &mut carol, &mut dave, &mut erin,
    ] {
        let frame = client.recv_type("broadcast").await;
        assert_eq!(frame["payload"]["message"], "maintenance at noon");
    }

    // Unique names hold across nodes, and a name given up on one node is free on the other.
    erin.send_request("set-name", json!({"username": "ANN"}))
        .await;
    assert_eq!(erin.recv_type_or_error().await["code"], "name_taken");
    ann.send_request("set-name", json!({"username": "carol"}))
        .await;
    assert_eq!(ann.recv_type_or_error().await["code"], "name_taken");
    ann.set_name("Annie").await;
    erin.set_name("Ann").await;
    ann.send_request("set-name", json!({"username": "ann"}))
        .await;
    assert_eq!(ann.recv_type_or_error().await["code"], "name_taken");

    // Leaves and disconnects: user_left crosses nodes once the user's last connection anywhere
    // is gone. Bob's connection on A leaves: he is still present through B, nobody is told.
    bob_a
        .send_request("leave", json!({"channel": "lobby"}))
        .await;
    assert_eq!(
        bob_a.recv_type_or_error().await,
        json!({"message": "You have left lobby"})
    );
    drop(bob_b); // Bob's last connection in lobby (on B) disconnects.
    let bob_left = presence("user_left", "lobby", &bob_login.user_id, "Bob");
    assert_eq!(ann.recv_type("user_left").await, bob_left);
    assert_eq!(carol.recv_type("user_left").await, bob_left);
    carol
        .send_request("leave", json!({"channel": "lobby"}))
        .await;
    assert_eq!(
        carol.recv_type_or_error().await,
        json!({"message": "You have left lobby"})
    );
    // The next user_left on A is Carol's: Bob's leave on A announced nothing.
    assert_eq!(
        ann.recv_type("user_left").await,
        presence("user_left", "lobby", &carol.user_id, "Carol")
    );
    assert_eq!(
        who(&mut ann, "lobby").await,
        [(ann.user_id.clone(), "Annie".to_owned())]
    );
    // Ann disconnects from A: her channel mates on B hear it.
    let ann_id = ann.user_id.clone();
    drop(ann);
    let ann_left = json!({"type": "user_left", "payload": {"channel": "hist", "user_id": ann_id, "username": "Annie"}});
    assert_eq!(dave.recv_type("user_left").await, ann_left);
    assert_eq!(erin.recv_type("user_left").await, ann_left);

    // Bob's last connection (on A) closes: B no longer finds him.
    drop(bob_a);
    let deadline = Instant::now() + SLOW;
    loop {
        carol
            .send_request(
                "direct",
                json!({"to": bob_login.user_id, "message": "still there?"}),
            )
            .await;
        let reply = carol.recv_type_or_error().await;
        if reply["code"] == "not_found" {
            break;
        }
        assert!(Instant::now() < deadline, "Bob is still online: {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn different_prefixes_are_isolated() {
    let one = TestEngine::current();
    let two = TestEngine::fresh_redis();
    let configure = |c: &mut Config| {
        fast(c);
        c.engine.unique_names = true;
    };
    let a = TestServer::start_on(&one, configure).await;
    let b = TestServer::start_on(&two, configure).await;
    let mut ann = a.named("Ann").await;
    // The same name under another prefix is another deployment's business.
    let mut other_ann = b.named("Ann").await;
    ann.join("lobby").await;
    ann.recv_type("user_joined").await;
    other_ann.join("lobby").await;
    other_ann.recv_type("user_joined").await;
    say(&mut ann, "lobby", "only for prefix one").await;
    say(&mut other_ann, "lobby", "only for prefix two").await;
    // Both messages are published by now: neither crosses over.
    ann.expect_silence(Duration::from_millis(300)).await;
    other_ann.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(
        who(&mut ann, "lobby").await,
        [(ann.user_id.clone(), "Ann".to_owned())]
    );
    let mut bob = b.named("Bob").await;
    bob.send_request("direct", json!({"to": ann.user_id, "message": "hi"}))
        .await;
    assert_eq!(bob.recv_type_or_error().await["code"], "not_found");

    b.stop().await;
    tokio::task::block_in_place(|| delete_keys(&redis_url().unwrap(), two.prefix().unwrap()));
}

/// A node that died (no liveness key, stale heartbeat) still holds presence in Redis: a live
/// node reaps it within a heartbeat, `who` drops its users and members see `user_left`.
async fn users_of_a_dead_node_leave_presence() {
    let prefix = TestEngine::current().prefix().unwrap().to_owned();
    let node = TestServer::start_with(fast).await;
    let mut ann = node.named("Ann").await;
    ann.join("lobby").await;
    ann.recv_type("user_joined").await;

    // What a node that crashed leaves behind: its share of presence and online users (one
    // command at a time: on a cluster these keys live in different slots).
    let dead = "dead-node";
    let mut redis = EngineConnection::current().await;
    let keys = server::engine::RedisKeys::new(&prefix);
    let _: i64 = redis
        .sadd(keys.node_presence(dead), "lobby\nghost")
        .await
        .unwrap();
    let _: i64 = redis
        .sadd(keys.presence_nodes("lobby"), format!("ghost\n{dead}"))
        .await
        .unwrap();
    let _: i64 = redis
        .hincr(keys.presence("lobby"), "ghost", 1)
        .await
        .unwrap();
    let () = redis.set(keys.name("ghost"), "Ghost").await.unwrap();
    let _: i64 = redis.sadd(keys.node_users(dead), "ghost").await.unwrap();
    let _: i64 = redis.sadd(keys.online("ghost"), dead).await.unwrap();
    let _: i64 = redis.zadd(keys.nodes(), dead, 1).await.unwrap();
    let mut users = who(&mut ann, "lobby").await;
    users.sort();
    assert!(users.iter().any(|(id, _)| id == "ghost"), "{users:?}");

    // Within a heartbeat (5 s) the live node reaps it.
    let left = ann.recv_type_within("user_left", SLOW).await;
    assert_eq!(left["payload"]["user_id"], "ghost");
    assert_eq!(left["payload"]["username"], "Ghost");
    let users = who(&mut ann, "lobby").await;
    assert!(users.iter().all(|(id, _)| id != "ghost"), "{users:?}");
    ann.send_request("direct", json!({"to": "ghost", "message": "hello?"}))
        .await;
    assert_eq!(ann.recv_type_or_error().await["code"], "not_found");
    let nodes: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(keys.nodes())
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!nodes.contains(&dead.to_owned()), "{nodes:?}");
}
