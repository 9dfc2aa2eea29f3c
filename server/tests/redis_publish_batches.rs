//! The Redis engine publishes in batches (`--redis-publish-linger`): messages sent at once by
//! players of two nodes share round trips to Redis, and still every acknowledged message is
//! delivered once, in id order, the same order on every node, and in history. A script Redis
//! forgot (`SCRIPT FLUSH`, a restart) is loaded again without the sender noticing. Without Redis
//! these tests skip, except under `CI=true`, where they fail.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::{Value, json};

redis_only!(
    batched_messages_arrive_once_in_order_on_every_node,
    a_flushed_script_is_loaded_again
);
cluster_only!(batched_messages_arrive_once_in_order_on_every_node);

/// Senders per node, and messages each.
const SENDERS: usize = 4;
const MESSAGES: usize = 15;

/// A linger long enough that every batch holds several messages.
fn lingering(config: &mut server::config::Config) {
    fast(config);
    config.engine.redis_publish_linger = Duration::from_millis(20);
}

/// The id of a message as sortable numbers.
fn id_of(message: &Value) -> (u64, u64) {
    let id = message["payload"]["id"].as_str().expect("an id");
    let (ms, seq) = id.split_once('-').expect("ms-seq");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Receives `count` chat messages on `client`, in the order they arrive.
async fn receive(client: &mut Client, count: usize) -> Vec<Value> {
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        messages.push(client.recv_type("chat_message_received").await);
    }
    messages
}

async fn batched_messages_arrive_once_in_order_on_every_node() {
    let a = TestServer::start_with(lingering).await;
    let b = a.start_node(lingering).await;
    let mut watch_a = a.named("WatchA").await;
    let mut watch_b = b.named("WatchB").await;
    watch_a.join("batch").await;
    watch_b.join("batch").await;

    // Every sender, on both nodes, sends its messages as fast as they are acknowledged.
    let mut senders = Vec::new();
    for (node, server) in [("a", &a), ("b", &b)] {
        for n in 0..SENDERS {
            let mut client = server.named(&format!("{node}{n}")).await;
            client.join("batch").await;
            senders.push(tokio::spawn(async move {
                for m in 0..MESSAGES {
                    let text = format!("{node}{n}-{m}");
                    let message = json!({"channel": "batch", "message": text});
                    client.send_request("message", message).await;
                    assert_eq!(
                        client.recv_type_or_error().await,
                        json!({"message": format!("Message sent to batch: {text}")})
                    );
                }
            }));
        }
    }
    for sender in senders {
        sender.await.expect("a sender failed");
    }

    let total = 2 * SENDERS * MESSAGES;
    let seen_a = receive(&mut watch_a, total).await;
    let seen_b = receive(&mut watch_b, total).await;
    let ids_a: Vec<(u64, u64)> = seen_a.iter().map(id_of).collect();
    let ids_b: Vec<(u64, u64)> = seen_b.iter().map(id_of).collect();
    assert!(
        ids_a.windows(2).all(|pair| pair[0] < pair[1]),
        "node A delivered out of id order (or twice): {ids_a:?}"
    );
    assert_eq!(ids_a, ids_b, "the nodes delivered different sequences");
    // Each sender's own messages in the order it sent them.
    for sender in ["a0", "a3", "b1", "b2"] {
        let texts: Vec<&str> = seen_a
            .iter()
            .filter_map(|m| m["payload"]["message"].as_str())
            .filter(|text| text.starts_with(&format!("{sender}-")))
            .collect();
        let want: Vec<String> = (0..MESSAGES).map(|m| format!("{sender}-{m}")).collect();
        assert_eq!(texts, want);
    }
    // History holds the same messages in the same order.
    let mut reader = b.named("Reader").await;
    reader
        .send_request("join", json!({"channel": "batch", "history": total}))
        .await;
    let history = reader.recv_type("history").await;
    let stored: Vec<(u64, u64)> = history["payload"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| id_of(&json!({"payload": m})))
        .collect();
    assert_eq!(stored, ids_a);
}

async fn a_flushed_script_is_loaded_again() {
    let server = TestServer::start_with(lingering).await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    say(&mut ann, "lobby", "before").await;
    let mut redis = redis_connection(&redis_url().unwrap()).await;
    let _: () = ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .expect("SCRIPT FLUSH");
    // The batch is refused with NOSCRIPT; the message goes again alone, loading the script.
    say(&mut ann, "lobby", "after").await;
    say(&mut ann, "lobby", "and again").await;
}
