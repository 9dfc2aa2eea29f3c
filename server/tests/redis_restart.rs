//! A Redis restart while clients chat across two nodes (on a private redis-server, never the
//! shared one): every message is acked or refused as unavailable, and no acked message is lost.
//! Without the redis-server binary this test skips, except under `CI=true`, where it fails.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::{Value, json};
use server::config::EngineKind;
use tokio::time::Instant;

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
    let Some(mut redis) = private_redis("a_redis_restart_loses_no_acknowledged_message").await
    else {
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
