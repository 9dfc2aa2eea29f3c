//! History: `history` on join, `since` resume after a reconnect, paging back, gaps.

mod common;

use common::*;
use serde_json::json;

// Each test runs twice: `memory::name` and `redis::name`.
per_engine!(
    join_with_history_sends_the_last_messages_first,
    a_reconnect_with_since_receives_exactly_what_it_missed,
    since_replay_meets_live_traffic_without_duplicates_or_gaps,
    history_pages_back_with_before_and_limit,
    since_older_than_what_is_kept_reports_a_gap,
    extreme_ids_read_nothing_instead_of_failing,
);

/// Sends `count` messages `prefix-N` to `channel` and reads each ack and own copy. Returns ids.
async fn send_many(client: &mut Client, channel: &str, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        client
            .send_request(
                "message",
                json!({"channel": channel, "message": format!("{prefix}-{n}")}),
            )
            .await;
        let ack = client.recv_type_or_error().await;
        assert!(
            ack["message"]
                .as_str()
                .unwrap()
                .starts_with("Message sent to"),
            "{ack}"
        );
        let own = client.recv_type("chat_message_received").await;
        ids.push(own["payload"]["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn fast(config: &mut server::config::Config) {
    config.limits.messages_per_second = 10_000;
    config.limits.message_burst = 10_000;
    config.limits.frames_per_second = 10_000;
    config.limits.frame_burst = 10_000;
}

async fn join_with_history_sends_the_last_messages_first() {
    let server = TestServer::start_with(fast).await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let ids = send_many(&mut ann, "lobby", "m", 5).await;
    assert!(
        ids.windows(2).all(|w| {
            let parse = |s: &str| {
                let (a, b) = s.split_once('-').unwrap();
                (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap())
            };
            parse(&w[0]) < parse(&w[1])
        }),
        "ids are ordered: {ids:?}"
    );

    let mut bob = server.named("Bob").await;
    bob.send(json!({"type": "join", "payload": {"channel": "lobby", "history": 3}, "ref": 9}))
        .await;
    bob.expect_text(r#"{"message":"You have joined lobby","ref":9}"#)
        .await;
    let history = bob.recv().await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["ref"], 9);
    assert_eq!(history["payload"]["channel"], "lobby");
    assert_eq!(
        texts(&history["payload"]["messages"]),
        ["m-2", "m-3", "m-4"]
    );
    assert_eq!(history["payload"]["more"], true);
    assert_eq!(history["payload"]["messages"][2]["id"], ids[4].as_str());
}

async fn a_reconnect_with_since_receives_exactly_what_it_missed() {
    let server = TestServer::start_with(fast).await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let login = server.login().await;
    let mut bob = server.connect(&login.auth_token).await;
    bob.recv_text().await;
    bob.set_name("Bob").await;
    bob.join("lobby").await;

    let before = send_many(&mut ann, "lobby", "seen", 3).await;
    // Bob reads what he was sent, then drops off.
    for _ in 0..3 {
        bob.recv_type("chat_message_received").await;
    }
    let last_seen = before.last().unwrap().clone();
    drop(bob);
    ann.recv_type("user_left").await;

    send_many(&mut ann, "lobby", "missed", 4).await;

    let mut bob = server.connect(&login.auth_token).await;
    bob.recv_text().await;
    bob.send_request("join", json!({"channel": "lobby", "since": last_seen}))
        .await;
    bob.expect(json!({"message": "You have joined lobby"}))
        .await;
    let history = bob.recv().await;
    assert_eq!(history["type"], "history");
    assert_eq!(
        texts(&history["payload"]["messages"]),
        ["missed-0", "missed-1", "missed-2", "missed-3"]
    );
    assert!(history["payload"].get("gap").is_none());

    // Live traffic continues after the replay.
    send_many(&mut ann, "lobby", "live", 1).await;
    let live = bob.recv_type("chat_message_received").await;
    assert_eq!(live["payload"]["message"], "live-0");
}

async fn since_replay_meets_live_traffic_without_duplicates_or_gaps() {
    let server = TestServer::start_with(fast).await;
    let mut ann = server.named("Ann").await;
    ann.join("race").await;
    let first = send_many(&mut ann, "race", "old", 1).await;

    // Ann keeps sending while Bob joins with `since`; whatever the interleaving, Bob must see
    // every message after `since` exactly once, in order.
    const COUNT: usize = 200;
    let sender = tokio::spawn(async move {
        for n in 0..COUNT {
            ann.send_request(
                "message",
                json!({"channel": "race", "message": format!("n-{n}")}),
            )
            .await;
        }
        ann
    });
    let mut bob = server.named("Bob").await;
    bob.send_request("join", json!({"channel": "race", "since": first[0]}))
        .await;
    bob.expect(json!({"message": "You have joined race"})).await;
    let mut seen = Vec::new();
    let history = bob.recv_type("history").await;
    seen.extend(texts(&history["payload"]["messages"]));
    while seen.last().map(String::as_str) != Some(&format!("n-{}", COUNT - 1)) {
        let frame = bob.recv().await;
        if frame["type"] == "chat_message_received" {
            seen.push(frame["payload"]["message"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<String> = (0..COUNT).map(|n| format!("n-{n}")).collect();
    assert_eq!(seen, expected);
    sender.await.unwrap();
}

async fn history_pages_back_with_before_and_limit() {
    let server = TestServer::start_with(fast).await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let ids = send_many(&mut ann, "lobby", "p", 7).await;

    ann.send(json!({"type": "history", "payload": {"channel": "lobby", "limit": 3}, "ref": "h1"}))
        .await;
    let page = ann.recv_type("history").await;
    assert_eq!(page["ref"], "h1");
    assert_eq!(texts(&page["payload"]["messages"]), ["p-4", "p-5", "p-6"]);
    assert_eq!(page["payload"]["more"], true);

    ann.send_request(
        "history",
        json!({"channel": "lobby", "before": ids[4], "limit": 3}),
    )
    .await;
    let page = ann.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), ["p-1", "p-2", "p-3"]);
    assert_eq!(page["payload"]["more"], true);

    ann.send_request(
        "history",
        json!({"channel": "lobby", "before": ids[1], "limit": 3}),
    )
    .await;
    let page = ann.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), ["p-0"]);
    assert!(page["payload"].get("more").is_none());

    ann.send_request("history", json!({"channel": "other", "limit": 3}))
        .await;
    ann.expect(json!({"error": "You must join the channel first", "code": "not_joined"}))
        .await;
}

async fn since_older_than_what_is_kept_reports_a_gap() {
    let server = TestServer::start_with(|c| {
        fast(c);
        c.engine.history_size = 3;
    })
    .await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let ids = send_many(&mut ann, "lobby", "g", 6).await;
    let mut bob = server.named("Bob").await;
    bob.send_request("join", json!({"channel": "lobby", "since": ids[0]}))
        .await;
    bob.recv().await;
    let history = bob.recv_type("history").await;
    assert_eq!(
        texts(&history["payload"]["messages"]),
        ["g-3", "g-4", "g-5"]
    );
    assert_eq!(history["payload"]["gap"], true);
}

/// Ids at the ends of the range are valid requests that select nothing: an empty page, never
/// an engine error.
async fn extreme_ids_read_nothing_instead_of_failing() {
    let server = TestServer::start_with(fast).await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    send_many(&mut ann, "lobby", "x", 2).await;
    ann.send_request("history", json!({"channel": "lobby", "before": "0"}))
        .await;
    let page = ann.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), Vec::<String>::new());
    let mut bob = server.named("Bob").await;
    bob.send_request(
        "join",
        json!({"channel": "lobby", "since": "18446744073709551615-18446744073709551615"}),
    )
    .await;
    bob.expect(json!({"message": "You have joined lobby"}))
        .await;
    let page = bob.recv_type("history").await;
    assert_eq!(texts(&page["payload"]["messages"]), Vec::<String>::new());
}

/// The memory engine holds at most `--memory-history-bytes` of history in all channels: past
/// it the oldest messages of any channel go first, and a client resuming from before them is
/// told `gap: true` (also when its channel lost every message and its last member left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_history_past_its_byte_budget_drops_the_oldest_and_resume_reports_the_gap() {
    const BUDGET: u64 = 16 * 1024;
    let server = TestServer::start_on(&TestEngine::Memory, |c| {
        fast(c);
        c.engine.memory_history_bytes = bytesize::ByteSize::b(BUDGET);
    })
    .await;
    let mut ann = server.named("Ann").await;
    ann.join("old").await;
    ann.join("busy").await;
    let login = server.login().await;
    let mut bob = server.connect(&login.auth_token).await;
    bob.recv_text().await;
    bob.set_name("Bob").await;
    bob.join("old").await;

    let old = send_many(&mut ann, "old", "old", 3).await;
    bob.recv_type("chat_message_received").await;
    ann.send_request("leave", json!({"channel": "old"})).await;
    ann.expect(json!({"message": "You have left old"})).await;
    // ~450 bytes each: 100 of them are almost three times the budget.
    let long = "b".repeat(200);
    send_many(&mut ann, "busy", &long, 100).await;
    // Bob, the last member, leaves a channel whose history is now empty; then reconnects.
    bob.send_request("leave", json!({"channel": "old"})).await;
    assert_eq!(
        bob.recv_type_or_error().await,
        json!({"message": "You have left old"})
    );
    drop(bob);

    let mut bob = server.connect(&login.auth_token).await;
    bob.recv_text().await;
    bob.send_request("join", json!({"channel": "old", "since": old[0]}))
        .await;
    bob.expect(json!({"message": "You have joined old"})).await;
    let history = bob.recv_type("history").await;
    assert_eq!(texts(&history["payload"]["messages"]), Vec::<String>::new());
    assert_eq!(history["payload"]["gap"], true, "{history}");

    // The busy channel keeps its newest messages, as many as fit.
    ann.send_request("history", json!({"channel": "busy", "limit": 200}))
        .await;
    let page = ann.recv_type("history").await;
    let kept = texts(&page["payload"]["messages"]);
    assert!(kept.len() > 10 && kept.len() < 50, "{} kept", kept.len());
    assert_eq!(kept.last().unwrap(), &format!("{long}-99"));

    let (_, metrics) = server.get("/metrics").await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
    };
    let held = value("chat_memory_history_bytes ");
    assert!(held > 0 && held <= BUDGET, "{held} bytes held");
    let dropped = value(r#"chat_limit_hits_total{limit="history_bytes"} "#);
    assert_eq!(dropped as usize, 103 - kept.len());
}
