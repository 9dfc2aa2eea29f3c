//! The Redis engine's channel subscriptions follow local membership: one per channel with
//! members on the node, none once they are gone, however joins and leaves interleave. Without
//! Redis this test skips, except under `CI=true`, where it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::*;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::time::Instant;

redis_only!(channel_subscriptions_are_reference_counted);

/// The engine's pub/sub channel of a chat channel (the engine's own naming).
fn pubsub_channel(prefix: &str, channel: &str) -> String {
    server::engine::RedisKeys::new(prefix).channel(channel)
}

/// The value of a metric line `name value` (no labels) on `node`.
async fn metric(node: &TestServer, name: &str) -> f64 {
    let (status, text) = node.get("/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
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
