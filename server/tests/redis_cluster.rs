//! The Redis engine as a cluster: two nodes in this process sharing one Redis (each test under
//! its own key prefix), subscriptions that follow local membership, and a Redis restart while
//! clients chat (on a private redis-server). Without Redis (or, for the restart, without the
//! redis-server binary) these tests skip, except under `CI=true`, where they fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use server::config::{Config, EngineKind};
use tokio::time::Instant;

/// Deadline of anything that waits on the cluster (reconnects, unsubscribes, replays).
const SLOW: Duration = Duration::from_secs(20);

redis_only!(
    two_nodes_share_every_kind_of_message,
    different_prefixes_are_isolated,
    channel_subscriptions_are_reference_counted,
    users_of_a_dead_node_leave_presence,
);

const ADMIN: &str = "cluster-admin";
const WELCOME: &str = r#"{"message":"Successfully connected!"}"#;

fn fast(config: &mut Config) {
    config.limits.messages_per_second = 10_000;
    config.limits.message_burst = 10_000;
    config.limits.frames_per_second = 10_000;
    config.limits.frame_burst = 10_000;
}

/// The engine's pub/sub channel of a chat channel (the engine's own naming).
fn pubsub_channel(prefix: &str, channel: &str) -> String {
    server::engine::RedisKeys::new(prefix).channel(channel)
}

fn presence(kind: &str, channel: &str, user_id: &str, username: &str) -> Value {
    json!({"type": kind, "payload": {"channel": channel, "user_id": user_id, "username": username}})
}

fn joined(channel: &str, client: &Client, username: &str) -> Value {
    presence("user_joined", channel, &client.user_id, username)
}

/// Sends a chat message and checks the ack; returns the sender's own copy (events the sender
/// had pending are skipped).
async fn say(client: &mut Client, channel: &str, text: &str) -> Value {
    client
        .send_request("message", json!({"channel": channel, "message": text}))
        .await;
    assert_eq!(
        client.recv_type_or_error().await,
        json!({"message": format!("Message sent to {channel}: {text}")})
    );
    let own = client.recv_type("chat_message_received").await;
    assert_eq!(own["payload"]["message"], text);
    own
}

/// `who` on `channel`: (user id, name) pairs, sorted.
async fn who(client: &mut Client, channel: &str) -> Vec<(String, String)> {
    client
        .send(json!({"type": "who", "payload": {"channel": channel}, "ref": "who"}))
        .await;
    let list = client.recv_type("presence").await;
    assert_eq!(list["ref"], "who");
    let mut users: Vec<(String, String)> = list["payload"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap().to_owned(),
                u["username"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    users.sort();
    users
}

fn texts(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect()
}

/// The value of a metric line `name value` (no labels) on `node`.
async fn metric(node: &TestServer, name: &str) -> f64 {
    let (status, text) = node.get("/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Polls `check` until it returns true, failing with `what` after [`SLOW`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + SLOW;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `PUBSUB NUMSUB` of these pub/sub channels: subscriber count per channel.
async fn numsub(url: &str, channels: &[String]) -> BTreeMap<String, i64> {
    let mut redis = redis_connection(url).await;
    let counts: Vec<(String, i64)> = ::redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channels)
        .query_async(&mut redis)
        .await
        .expect("PUBSUB NUMSUB");
    counts.into_iter().collect()
}

async fn two_nodes_share_every_kind_of_message() {
    let a = TestServer::start_with(|c| {
        fast(c);
        c.admin_token = Some(ADMIN.into());
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
            Some(ADMIN),
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

async fn channel_subscriptions_are_reference_counted() {
    const CLIENTS: usize = 20;
    const CHANNELS: usize = 5;
    const OPS: usize = 40;
    let url = redis_url().unwrap();
    let prefix = TestEngine::current().prefix().unwrap().to_owned();
    let a = TestServer::start_with(fast).await;
    let b = a.start_node(|_| {}).await;
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("rc-{i}")).collect();
    let keys: Vec<String> = channels
        .iter()
        .map(|c| pubsub_channel(&prefix, c))
        .collect();
    assert!(
        numsub(&url, &keys).await.values().all(|&n| n == 0),
        "nobody joined yet"
    );

    // Every client joins and leaves random channels on A, all at once.
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let mut client = a.named(&format!("c{n}")).await;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(n as u64);
            let mut joined = BTreeSet::new();
            for _ in 0..OPS {
                let channel = format!("rc-{}", rng.gen_range(0..CHANNELS));
                if joined.remove(&channel) {
                    client
                        .send_request("leave", json!({"channel": channel}))
                        .await;
                    assert_eq!(
                        client.recv_type_or_error().await,
                        json!({"message": format!("You have left {channel}")})
                    );
                } else {
                    client.join(&channel).await;
                    joined.insert(channel);
                }
                if rng.gen_bool(0.3) {
                    tokio::task::yield_now().await;
                }
            }
            (client, joined)
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }

    // Now A holds exactly one subscription per channel with local members, none for others.
    let mut members: BTreeMap<&str, usize> = channels.iter().map(|c| (c.as_str(), 0)).collect();
    for (_, joined) in &clients {
        for channel in joined {
            *members.get_mut(channel.as_str()).unwrap() += 1;
        }
    }
    let expected: BTreeMap<String, i64> = channels
        .iter()
        .zip(&keys)
        .map(|(c, key)| (key.clone(), i64::from(members[c.as_str()] > 0)))
        .collect();
    // UNSUBSCRIBE completes on the Redis side a little after the leave reply: poll.
    let mut counts = BTreeMap::new();
    let deadline = Instant::now() + SLOW;
    while Instant::now() < deadline {
        counts = numsub(&url, &keys).await;
        if counts == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        counts, expected,
        "subscriptions of A after the churn (members per channel: {members:?})"
    );

    // And those subscriptions work: a message from B reaches every member on A.
    let mut probe = b.named("probe").await;
    for channel in &channels {
        probe.join(channel).await;
    }
    for channel in &channels {
        say(&mut probe, channel, &format!("probe {channel}")).await;
    }
    for (client, joined) in &mut clients {
        let mut wanted: BTreeSet<String> = joined.iter().map(|c| format!("probe {c}")).collect();
        while !wanted.is_empty() {
            let message = client.recv_type("chat_message_received").await;
            let text = message["payload"]["message"].as_str().unwrap();
            if text.starts_with("probe ") {
                assert!(wanted.remove(text), "unexpected {text} for {joined:?}");
            }
        }
    }

    // Everyone goes: half leave their channels first, the others just disconnect.
    let mut leaving = Vec::new();
    for (n, (mut client, joined)) in clients.into_iter().enumerate() {
        leaving.push(tokio::spawn(async move {
            if n % 2 == 0 {
                for channel in joined {
                    client
                        .send_request("leave", json!({"channel": channel}))
                        .await;
                    client.recv_type_or_error().await;
                }
            }
            drop(client);
        }));
    }
    drop(probe);
    for task in leaving {
        task.await.unwrap();
    }
    for node in [&a, &b] {
        eventually("every connection is closed", || async {
            metric(node, "chat_connections").await == 0.0
        })
        .await;
    }
    eventually("no node subscribes to any rc-* channel", || async {
        numsub(&url, &keys).await.values().all(|&n| n == 0)
    })
    .await;
    let mut redis = redis_connection(&url).await;
    let left: Vec<String> = ::redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(format!("{prefix}*rc-*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(left.is_empty(), "still subscribed: {left:?}");
}

/// What the sender of the restart test saw, per message number.
#[derive(Debug, Default)]
struct Sent {
    count: u64,
    acked: BTreeSet<u64>,
    unavailable: BTreeSet<u64>,
    /// Other replies to numbered messages (none expected).
    other: Vec<Value>,
}

impl Sent {
    fn answered(&self) -> u64 {
        (self.acked.len() + self.unavailable.len() + self.other.len()) as u64
    }
}

/// Sends numbered messages (`m-N`, ref N) to `channel` at about 50 per second until `stop`,
/// then collects the replies still owed; records every reply in `sent`.
async fn send_numbered(
    mut client: Client,
    channel: &'static str,
    sent: Arc<Mutex<Sent>>,
    stop: Arc<AtomicBool>,
) -> Client {
    let interval = Duration::from_millis(20);
    let mut next = Instant::now();
    let mut stopped_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stopped_at.is_none() && stop.load(Ordering::Acquire) {
            stopped_at = Some(now);
        }
        if let Some(stopped) = stopped_at {
            let state = sent.lock().unwrap();
            if state.answered() >= state.count {
                return client;
            }
            assert!(
                now < stopped + SLOW,
                "no reply to some messages: {:?}",
                *state
            );
        } else if now >= next {
            let n = sent.lock().unwrap().count;
            client
                .send(json!({"type": "message", "payload": {"channel": channel, "message": format!("m-{n}")}, "ref": n}))
                .await;
            sent.lock().unwrap().count = n + 1;
            next += interval;
            continue;
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let Some(frame) = client.recv_within(wait).await else {
            continue;
        };
        if frame.get("type").is_some() {
            continue; // Own copies and presence events.
        }
        let n = frame["ref"]
            .as_u64()
            .unwrap_or_else(|| panic!("a reply without our ref: {frame}"));
        let mut state = sent.lock().unwrap();
        if frame["message"] == format!("Message sent to {channel}: m-{n}") {
            assert!(state.acked.insert(n), "two acks for {n}");
        } else if frame["code"] == "unavailable" {
            assert!(state.unavailable.insert(n), "two errors for {n}");
        } else {
            state.other.push(frame);
        }
    }
}

/// Reads `m-N` chat messages until `stop`, recording N.
async fn receive_numbered(
    mut client: Client,
    received: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> Client {
    while !stop.load(Ordering::Acquire) {
        let text = match client.seen_within(Duration::from_millis(100)).await {
            None => continue,
            Some(Seen::Text(text)) => text,
            Some(closed) => {
                // Only expected once the test is over (and failed): say so, the missing
                // messages will fail the test.
                eprintln!("the receiver's connection ended: {closed:?}");
                break;
            }
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] != "chat_message_received" {
            continue;
        }
        if let Some(n) = frame["payload"]["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("m-"))
            .and_then(|n| n.parse().ok())
        {
            received.lock().unwrap().push(n);
        }
    }
    client
}

async fn health(node: &TestServer) -> u16 {
    node.get("/healthz").await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_acknowledged_message() {
    // A private redis-server (never the shared one): killed and started again on its port.
    let mut redis = None;
    let mut why = String::new();
    for _ in 0..3 {
        match tokio::task::spawn_blocking(|| RedisProcess::start(unused_port()))
            .await
            .unwrap()
        {
            Ok(process) => {
                redis = Some(process);
                break;
            }
            Err(error) => why = error,
        }
    }
    let Some(mut redis) = redis else {
        assert!(!on_ci(), "CI=true: this test needs redis-server: {why}");
        eprintln!("skipping a_redis_restart_loses_no_acknowledged_message: {why}");
        return;
    };
    let url = redis.url();
    let TestEngine::Redis { prefix } = TestEngine::fresh_redis() else {
        unreachable!()
    };
    let a = TestServer::start_on(&TestEngine::Memory, |c| {
        fast(c);
        c.engine.kind = Some(EngineKind::Redis);
        c.engine.redis_url = Some(url.clone());
        c.engine.redis_prefix = prefix.clone();
    })
    .await;
    let b = a.start_node(|_| {}).await;

    let mut sender = a.named("Sender").await;
    sender.join("live").await;
    sender.recv_type("user_joined").await;
    let mut receiver = b.named("Receiver").await;
    receiver.join("live").await;
    receiver.recv_type("user_joined").await;
    sender.recv_type("user_joined").await;

    let sent = Arc::new(Mutex::new(Sent::default()));
    let received = Arc::new(Mutex::new(Vec::new()));
    let stop_sending = Arc::new(AtomicBool::new(false));
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let sending = tokio::spawn(send_numbered(
        sender,
        "live",
        sent.clone(),
        stop_sending.clone(),
    ));
    let receiving = tokio::spawn(receive_numbered(
        receiver,
        received.clone(),
        stop_receiving.clone(),
    ));
    let acked = || sent.lock().unwrap().acked.len();
    let unavailable = || sent.lock().unwrap().unavailable.len();

    eventually("the receiver gets messages", || async {
        received.lock().unwrap().len() >= 25
    })
    .await;
    assert_eq!(health(&a).await, 200);
    assert_eq!(health(&b).await, 200);

    // Redis dies. Both nodes say so, and sends are refused with `unavailable`.
    tokio::task::block_in_place(|| redis.kill());
    for node in [&a, &b] {
        eventually("/healthz is 503 while Redis is down", || async {
            health(node).await == 503
        })
        .await;
    }
    eventually("sends are refused with unavailable", || async {
        unavailable() >= 10
    })
    .await;

    // Redis is back, empty. Both nodes recover and sends go through again.
    tokio::task::block_in_place(|| redis.restart()).expect("redis-server restarts");
    for node in [&a, &b] {
        eventually("/healthz is 200 once Redis is back", || async {
            health(node).await == 200
        })
        .await;
    }
    let acked_before = acked();
    let deadline = Instant::now() + SLOW;
    while acked() < acked_before + 50 {
        if Instant::now() > deadline || !sent.lock().unwrap().other.is_empty() {
            let why = {
                let state = sent.lock().unwrap();
                format!(
                    "{} sent, {} acked, {} unavailable, other replies (last 3): {:?}",
                    state.count,
                    state.acked.len(),
                    state.unavailable.len(),
                    &state.other[state.other.len().saturating_sub(3)..],
                )
            };
            panic!(
                "sends are not acknowledged again after the restart (every message must be acked \
                 or refused as unavailable): {why}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop_sending.store(true, Ordering::Release);
    let _sender = sending.await.unwrap();
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let missing = || -> Vec<u64> {
        let got: BTreeSet<u64> = received.lock().unwrap().iter().copied().collect();
        sent.acked.difference(&got).copied().collect()
    };
    let deadline = Instant::now() + SLOW;
    while !missing().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_receiving.store(true, Ordering::Release);
    let _receiver = receiving.await.unwrap();

    let received = received.lock().unwrap().clone();
    let duplicates = received.len() - received.iter().collect::<BTreeSet<_>>().len();
    let summary = format!(
        "{} sent, {} acked, {} unavailable, {} received ({duplicates} duplicates)",
        sent.count,
        sent.acked.len(),
        sent.unavailable.len(),
        received.len(),
    );
    eprintln!("redis restart: {summary}");
    assert!(
        sent.other.is_empty(),
        "every message is either acked or refused as unavailable; {} got other replies, \
         the first: {:?} ({summary})",
        sent.other.len(),
        &sent.other[..sent.other.len().min(3)],
    );
    let unanswered: Vec<u64> = (0..sent.count)
        .filter(|n| !sent.acked.contains(n) && !sent.unavailable.contains(n))
        .collect();
    assert!(
        unanswered.is_empty(),
        "no reply to {unanswered:?} ({summary})"
    );
    assert!(
        !sent.unavailable.is_empty(),
        "the outage was seen ({summary})"
    );
    assert_eq!(
        missing(),
        Vec::<u64>::new(),
        "acked messages the receiver on the other node never got ({summary})"
    );

    drop(redis);
}

/// A node that died (no liveness key, stale heartbeat) still holds presence in Redis: a live
/// node reaps it within a heartbeat, `who` drops its users and members see `user_left`.
async fn users_of_a_dead_node_leave_presence() {
    let url = redis_url().unwrap();
    let prefix = TestEngine::current().prefix().unwrap().to_owned();
    let node = TestServer::start_with(fast).await;
    let mut ann = node.named("Ann").await;
    ann.join("lobby").await;
    ann.recv_type("user_joined").await;

    // What a node that crashed leaves behind: its share of presence and online users.
    let dead = "dead-node";
    let mut redis = redis_connection(&url).await;
    let _: () = ::redis::pipe()
        .sadd(format!("{prefix}node-presence:{dead}"), "lobby\nghost")
        .hincr(format!("{prefix}presence:lobby"), "ghost", 1)
        .hset(format!("{prefix}names"), "ghost", "Ghost")
        .sadd(format!("{prefix}node-users:{dead}"), "ghost")
        .hincr(format!("{prefix}online"), "ghost", 1)
        .zadd(format!("{prefix}nodes"), dead, 1)
        .query_async(&mut redis)
        .await
        .unwrap();
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
        .arg(format!("{prefix}nodes"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!nodes.contains(&dead.to_owned()), "{nodes:?}");
    tokio::task::block_in_place(|| delete_keys(&url, &prefix));
}
