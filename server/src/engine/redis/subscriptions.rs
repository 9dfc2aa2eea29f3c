//! The chat channels a node receives, and delivering their messages once and in order: live
//! copies and replays from the channel streams are merged by message id, so an outage, a
//! failover or a slot migration costs a replay, never a lost or doubled message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::{ChatMessage, MessageId};
use redis::AsyncCommands;

use super::Shared;
use super::entries::{Entry, entry_message};
use crate::engine::Delivery;

/// Most messages replayed per channel in one read (a longer gap is read again until caught up).
pub(super) const REPLAY_LIMIT: usize = 10_000;

/// Live messages held back per channel while its replay runs; past it they are dropped and read
/// from the stream by one more replay.
const HELD_LIMIT: usize = 10_000;

/// A channel this node receives.
#[derive(Debug, Default)]
pub(super) struct Subscription {
    /// The newest message delivered: where a replay starts, and below which a copy is a repeat.
    pub(super) last: Option<MessageId>,
    /// Live messages held back while a replay runs (sharded pub/sub).
    held: Option<Held>,
}

#[derive(Debug, Default)]
struct Held {
    messages: Vec<ChatMessage>,
    /// Messages were dropped, or the subscription was confirmed again: read the stream again.
    again: bool,
}

/// Channels this node receives, by chat channel name.
pub(super) type Subscriptions = HashMap<String, Subscription>;

impl Subscription {
    /// A subscription that delivers what comes after `last` (`None`: whatever comes).
    pub(super) fn after(last: Option<MessageId>) -> Self {
        Self { last, held: None }
    }

    /// Delivers `message` unless it is a repeat; true when it was delivered.
    fn deliver_once(&mut self, shared: &Shared, message: ChatMessage) -> bool {
        if self.last.is_some_and(|last| message.id <= last) {
            return false;
        }
        self.last = Some(message.id);
        shared.sink.deliver(Delivery::Message(Arc::new(message)));
        true
    }
}

impl Shared {
    /// Delivers a live channel message once, in order: dropped when the channel is no longer
    /// received here or it was delivered already; held back while a replay runs.
    pub(super) fn deliver_message(&self, message: ChatMessage) {
        let mut subscribed = self.subscribed.lock();
        let Some(subscription) = subscribed.get_mut(&message.channel) else {
            return;
        };
        match &mut subscription.held {
            Some(held) if held.messages.len() < HELD_LIMIT => held.messages.push(message),
            Some(held) => held.again = true,
            None => {
                subscription.deliver_once(self, message);
            }
        }
    }

    /// The messages of `channel` after `last` (all kept ones for `None`), oldest first.
    pub(super) async fn read_since(
        &self,
        channel: &str,
        last: Option<MessageId>,
    ) -> redis::RedisResult<Vec<ChatMessage>> {
        let start = match last {
            Some(last) => format!("({last}"),
            None => "-".to_owned(),
        };
        let entries: Vec<Entry> = self
            .conn
            .clone()
            .xrange_count(self.keys.history(channel), start, "+", REPLAY_LIMIT)
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| entry_message(channel, entry).ok())
            .collect())
    }

    /// Starts replaying `channel` from its stream (its subscription was just confirmed, maybe
    /// again after a failover or a slot migration): live messages are held back until the replay
    /// caught up, then delivered after it without repeats.
    pub(super) fn begin_replay(self: &Arc<Self>, channel: &str) {
        {
            let mut subscribed = self.subscribed.lock();
            let Some(subscription) = subscribed.get_mut(channel) else {
                return;
            };
            if let Some(held) = &mut subscription.held {
                held.again = true;
                return;
            }
            subscription.held = Some(Held::default());
        }
        let shared = self.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move { shared.replay_held(&channel).await });
    }

    async fn replay_held(&self, channel: &str) {
        let mut delay = Duration::from_millis(100);
        loop {
            let Some(last) = self.subscribed.lock().get(channel).map(|s| s.last) else {
                return;
            };
            let messages = match self.read_since(channel, last).await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, channel, "replay failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            let full = messages.len() >= REPLAY_LIMIT;
            let mut subscribed = self.subscribed.lock();
            let Some(subscription) = subscribed.get_mut(channel) else {
                return;
            };
            for message in messages {
                subscription.deliver_once(self, message);
            }
            let Some(held) = subscription.held.as_mut() else {
                return;
            };
            if full || held.again {
                held.again = false;
                continue;
            }
            let held = subscription.held.take().unwrap_or_default();
            for message in held.messages {
                subscription.deliver_once(self, message);
            }
            return;
        }
    }
}
