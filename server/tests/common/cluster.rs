//! Helpers shared by the Redis cluster tests (`redis_cluster`, `redis_subscriptions`,
//! `redis_restart`).

use std::time::Duration;

use serde_json::{Value, json};
use server::config::Config;
use tokio::time::Instant;

use super::Client;

/// Deadline of anything that waits on the cluster (reconnects, unsubscribes, replays).
pub const SLOW: Duration = Duration::from_secs(20);

/// Limits high enough that no test traffic is ever throttled.
pub fn fast(config: &mut Config) {
    config.limits.messages_per_second = 10_000;
    config.limits.message_burst = 10_000;
    config.limits.frames_per_second = 10_000;
    config.limits.frame_burst = 10_000;
}

/// Sends a chat message and checks the ack; returns the sender's own copy (events the sender
/// had pending are skipped).
pub async fn say(client: &mut Client, channel: &str, text: &str) -> Value {
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

/// Polls `check` until it returns true, failing with `what` after [`SLOW`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
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
