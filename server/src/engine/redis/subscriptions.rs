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

/// Live messages held back per channel while its replay runs; past it the newest are dropped
/// and read from the stream (which keeps the newest) by one more replay.
const HELD_LIMIT: usize = 2_000;

/// Failed stream reads before a replay gives up (and delivers what it holds): the channel is
/// then subscribed again, which starts a new replay.
const REPLAY_ATTEMPTS: u32 = 8;

/// A channel this node receives.
#[derive(Debug, Default)]
pub(super) struct Subscription {
    /// The newest message delivered: where a replay starts, and below which a copy is a repeat.
    pub(super) last: Option<MessageId>,
    /// Live messages held back until a replay merged them (sharded pub/sub).
    held: Option<Held>,
    /// A replay task runs for this channel.
    replaying: bool,
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
    /// A subscription that delivers whatever comes (classic pub/sub: the tail is set after).
    pub(super) fn open() -> Self {
        Self::default()
    }

    /// A subscription after `last` that holds live messages back until its first replay (sharded
    /// pub/sub: nothing is delivered before the stream was read from `last`).
    pub(super) fn held_after(last: MessageId) -> Self {
        Self {
            last: Some(last),
            held: Some(Held::default()),
            replaying: false,
        }
    }

    /// Delivers `message` unless it is a repeat.
    fn deliver_once(&mut self, shared: &Shared, message: ChatMessage) {
        if self.last.is_some_and(|last| message.id <= last) {
            return;
        }
        self.last = Some(message.id);
        shared.sink.deliver(Delivery::Message(Arc::new(message)));
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
            None => subscription.deliver_once(self, message),
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
    /// again after a failover or a slot migration): live messages are held back and merged with
    /// what the stream holds, by id, then delivered in order without repeats.
    pub(super) fn begin_replay(self: &Arc<Self>, channel: &str) {
        {
            let mut subscribed = self.subscribed.lock();
            let Some(subscription) = subscribed.get_mut(channel) else {
                return;
            };
            let held = subscription.held.get_or_insert_with(Held::default);
            if subscription.replaying {
                held.again = true;
                return;
            }
            subscription.replaying = true;
        }
        let shared = self.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move { shared.replay_held(&channel).await });
    }

    async fn replay_held(&self, channel: &str) {
        let mut delay = Duration::from_millis(100);
        let mut failures = 0;
        loop {
            let Some(last) = self.subscribed.lock().get(channel).map(|s| s.last) else {
                return;
            };
            let read = self.read_since(channel, last).await;
            if let Err(error) = &read
                && failures + 1 < REPLAY_ATTEMPTS
            {
                failures += 1;
                tracing::warn!(%error, channel, "replay failed; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
            let mut subscribed = self.subscribed.lock();
            let Some(subscription) = subscribed.get_mut(channel) else {
                return;
            };
            let mut messages = match read {
                Ok(messages) => messages,
                Err(error) => {
                    // Deliver what came live; subscribing again starts a new replay.
                    tracing::warn!(%error, channel, "replay failed; subscribing again");
                    let held = subscription.held.take().unwrap_or_default();
                    subscription.replaying = false;
                    for message in held.messages {
                        subscription.deliver_once(self, message);
                    }
                    drop(subscribed);
                    if let Some(sharded) = &self.sharded {
                        sharded.lose_channel(&self.keys.channel(channel));
                    }
                    return;
                }
            };
            let full = messages.len() >= REPLAY_LIMIT;
            let held = subscription.held.get_or_insert_with(Held::default);
            let again = std::mem::take(&mut held.again);
            // The stream and the live copies, merged by id: a live message trimmed from the
            // stream meanwhile is still delivered, and each once.
            messages.append(&mut held.messages);
            messages.sort_by_key(|message| message.id);
            messages.dedup_by_key(|message| message.id);
            for message in messages {
                subscription.deliver_once(self, message);
            }
            if full || again {
                continue;
            }
            subscription.held = None;
            subscription.replaying = false;
            return;
        }
    }
}
