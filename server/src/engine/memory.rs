//! The in-process engine: one node, no dependencies. History lives in a capped ring per channel.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use protocol::{BroadcastMessage, ChatMessage, DirectMessage, MessageId, PresenceUser};

use crate::moderation::{Sanction, Standing};

use super::{
    Delivery, DeliverySink, Engine, EngineError, History, HistoryQuery, NewMessage, now_ms,
};

/// Engine state kept in this process.
pub struct MemoryEngine {
    sink: Arc<dyn DeliverySink>,
    history_size: usize,
    channels: RwLock<HashMap<String, Arc<Mutex<ChannelState>>>>,
    names: Mutex<Names>,
    online: Mutex<HashMap<String, usize>>,
    standings: Mutex<HashMap<String, Standing>>,
    max_channels: usize,
}

#[derive(Default)]
struct ChannelState {
    last_id: MessageId,
    history: VecDeque<Arc<ChatMessage>>,
    /// Removed from the map: whoever still holds it must fetch a fresh entry.
    retired: bool,
    /// Id of the newest message dropped from history, if any was.
    trimmed_through: Option<MessageId>,
    /// Present users and how many `presence_add` calls hold them.
    present: HashMap<String, usize>,
    /// When the channel was last created or published to (Unix ms), for eviction.
    last_active_ms: u64,
}

#[derive(Default)]
struct Names {
    by_user: HashMap<String, String>,
    /// Lower-cased name → user holding it (only filled when names are unique).
    owners: HashMap<String, String>,
}

impl MemoryEngine {
    /// An engine delivering to `sink`, keeping `history_size` messages per channel.
    pub fn new(sink: Arc<dyn DeliverySink>, history_size: usize) -> Self {
        Self {
            sink,
            history_size,
            channels: RwLock::default(),
            names: Mutex::default(),
            online: Mutex::default(),
            standings: Mutex::default(),
            max_channels: usize::MAX,
        }
    }

    /// Keeps the history of at most `max` channels (at least 1).
    pub fn with_max_channels(mut self, max: usize) -> Self {
        self.max_channels = max.max(1);
        self
    }

    /// Runs `f` on the channel's live state, creating it when missing.
    fn with_channel<T>(&self, channel: &str, f: impl FnOnce(&mut ChannelState) -> T) -> T {
        loop {
            let existing = self.channels.read().get(channel).cloned();
            let state = match existing {
                Some(state) => state,
                None => self.create(channel),
            };
            let mut state = state.lock();
            if !state.retired {
                return f(&mut state);
            }
            // Forgotten while we waited for the lock: use the fresh entry.
        }
    }

    /// The channel's entry, created when missing; creating one past the cap forgets the
    /// channel without members that was quiet the longest.
    fn create(&self, channel: &str) -> Arc<Mutex<ChannelState>> {
        let mut channels = self.channels.write();
        if let Some(state) = channels.get(channel) {
            return state.clone();
        }
        if channels.len() >= self.max_channels {
            // Channels busy right now (locked) or with members are never candidates.
            let oldest = channels
                .iter()
                .filter_map(|(name, state)| {
                    let state = state.try_lock()?;
                    state
                        .present
                        .is_empty()
                        .then_some((state.last_active_ms, name))
                })
                .min()
                .map(|(_, name)| name.clone());
            if let Some(name) = oldest
                && let Some(state) = channels.remove(&name)
            {
                state.lock().retired = true;
                tracing::debug!(
                    channel = name,
                    "forgot a quiet channel's history (cap reached)"
                );
            }
        }
        let state = Arc::new(Mutex::new(ChannelState {
            last_active_ms: now_ms(),
            ..Default::default()
        }));
        channels.insert(channel.to_owned(), state.clone());
        state
    }

    fn existing(&self, channel: &str) -> Option<Arc<Mutex<ChannelState>>> {
        self.channels.read().get(channel).cloned()
    }

    /// The id after `last` for a message accepted at `now` (the Redis stream rule).
    fn next_id(last: MessageId, now: u64) -> MessageId {
        if now > last.ms {
            MessageId::new(now, 0)
        } else {
            last.successor()
        }
    }
}

fn read_history(state: &ChannelState, query: HistoryQuery) -> History {
    let kept = &state.history;
    let (start, end, gap) = match query {
        HistoryQuery::Last { limit } => (kept.len().saturating_sub(limit), kept.len(), false),
        HistoryQuery::Since { after, limit } => {
            let first_after = kept.partition_point(|m| m.id <= after);
            let missing = kept.len() - first_after;
            // Too many missed: send the newest `limit`, so that history meets live traffic
            // without a hole, and say that older ones were missed.
            let start = first_after + missing.saturating_sub(limit);
            let dropped = state.trimmed_through.is_some_and(|t| t > after);
            (start, kept.len(), dropped || start > first_after)
        }
        HistoryQuery::Before { before, limit } => {
            let end = kept.partition_point(|m| m.id < before);
            (end.saturating_sub(limit), end, false)
        }
    };
    History {
        messages: kept.range(start..end).map(|m| (**m).clone()).collect(),
        more: start > 0 && !matches!(query, HistoryQuery::Since { .. }),
        gap,
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    async fn subscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn publish(&self, new: NewMessage) -> Result<Arc<ChatMessage>, EngineError> {
        self.with_channel(&new.channel.clone(), |state| {
            let now = now_ms();
            let id = Self::next_id(state.last_id, now);
            state.last_id = id;
            state.last_active_ms = now;
            let message = Arc::new(new.stored(id));
            if self.history_size > 0 {
                if state.history.len() == self.history_size {
                    state.trimmed_through = state.history.pop_front().map(|m| m.id);
                }
                state.history.push_back(message.clone());
            }
            // Deliver under the channel lock so that deliveries leave in id order.
            self.sink.deliver(Delivery::Message(message.clone()));
            Ok(message)
        })
    }

    async fn history(&self, channel: &str, query: HistoryQuery) -> Result<History, EngineError> {
        Ok(self
            .existing(channel)
            .map(|state| read_history(&state.lock(), query))
            .unwrap_or_default())
    }

    async fn set_name(&self, user_id: &str, name: &str, unique: bool) -> Result<(), EngineError> {
        let mut names = self.names.lock();
        if unique {
            let key = name.to_lowercase();
            match names.owners.get(&key) {
                Some(owner) if owner != user_id => {
                    return Err(EngineError::NameTaken(name.to_owned()));
                }
                _ => {}
            }
            if let Some(old) = names.by_user.get(user_id).map(|n| n.to_lowercase()) {
                names.owners.remove(&old);
            }
            names.owners.insert(key, user_id.to_owned());
        }
        names.by_user.insert(user_id.to_owned(), name.to_owned());
        Ok(())
    }

    async fn name(&self, user_id: &str) -> Result<Option<String>, EngineError> {
        Ok(self.names.lock().by_user.get(user_id).cloned())
    }

    async fn presence_add(&self, channel: &str, user_id: &str) -> Result<bool, EngineError> {
        Ok(self.with_channel(channel, |state| {
            let count = state.present.entry(user_id.to_owned()).or_default();
            *count += 1;
            *count == 1
        }))
    }

    async fn presence_remove(&self, channel: &str, user_id: &str) -> Result<bool, EngineError> {
        let Some(state) = self.existing(channel) else {
            return Ok(false);
        };
        let mut state = state.lock();
        let Some(count) = state.present.get_mut(user_id) else {
            return Ok(false);
        };
        *count -= 1;
        if *count > 0 {
            return Ok(false);
        }
        state.present.remove(user_id);
        if state.present.is_empty() && state.history.is_empty() {
            // Nothing left to remember: forget the channel, so that joining many made-up
            // channel names does not grow memory.
            state.retired = true;
            drop(state);
            let mut channels = self.channels.write();
            if channels
                .get(channel)
                .is_some_and(|current| current.lock().retired)
            {
                channels.remove(channel);
            }
        }
        Ok(true)
    }

    async fn presence(&self, channel: &str) -> Result<Vec<PresenceUser>, EngineError> {
        let Some(state) = self.existing(channel) else {
            return Ok(Vec::new());
        };
        let mut users: Vec<String> = state.lock().present.keys().cloned().collect();
        users.sort();
        let names = self.names.lock();
        Ok(users
            .into_iter()
            .map(|user_id| PresenceUser {
                username: names.by_user.get(&user_id).cloned(),
                user_id,
            })
            .collect())
    }

    async fn announce(&self, delivery: Delivery) -> Result<(), EngineError> {
        self.sink.deliver(delivery);
        Ok(())
    }

    async fn user_online(&self, user_id: &str) -> Result<(), EngineError> {
        *self.online.lock().entry(user_id.to_owned()).or_default() += 1;
        Ok(())
    }

    async fn user_offline(&self, user_id: &str) -> Result<(), EngineError> {
        let mut online = self.online.lock();
        if let Some(count) = online.get_mut(user_id) {
            *count -= 1;
            if *count == 0 {
                online.remove(user_id);
            }
        }
        Ok(())
    }

    async fn send_direct(&self, to: &str, message: DirectMessage) -> Result<bool, EngineError> {
        if !self.online.lock().contains_key(to) {
            return Ok(false);
        }
        self.sink.deliver(Delivery::Direct {
            to: Arc::from(to),
            message: Arc::new(message),
        });
        Ok(true)
    }

    async fn broadcast(&self, message: BroadcastMessage) -> Result<(), EngineError> {
        self.sink.deliver(Delivery::Broadcast(Arc::new(message)));
        Ok(())
    }

    async fn moderate(&self, user_id: &str, sanction: Sanction) -> Result<(), EngineError> {
        {
            let mut standings = self.standings.lock();
            let standing = standings.entry(user_id.to_owned()).or_default();
            match &sanction {
                Sanction::Mute { until_ms, reason } => {
                    standing.muted = Some((*until_ms, reason.clone()));
                }
                Sanction::Unmute => standing.muted = None,
                Sanction::Ban { until_ms, reason } => {
                    standing.banned = Some((*until_ms, reason.clone()));
                }
                Sanction::Unban => standing.banned = None,
                Sanction::Kick { .. } => {}
            }
            if *standing == Standing::default() {
                standings.remove(user_id);
            }
        }
        self.sink.deliver(Delivery::Sanction {
            user: Arc::from(user_id),
            sanction: Arc::new(sanction),
        });
        Ok(())
    }

    async fn standing(&self, user_id: &str) -> Result<Standing, EngineError> {
        Ok(self
            .standings
            .lock()
            .get(user_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects deliveries.
    #[derive(Default)]
    struct Collect(Mutex<Vec<Delivery>>);

    impl DeliverySink for Collect {
        fn deliver(&self, delivery: Delivery) {
            self.0.lock().push(delivery);
        }
    }

    fn message(channel: &str, text: &str) -> NewMessage {
        NewMessage {
            channel: channel.into(),
            user_id: "u".into(),
            username: "U".into(),
            message: text.into(),
        }
    }

    #[tokio::test]
    async fn past_the_cap_the_quietest_channel_without_members_is_forgotten() {
        let engine = MemoryEngine::new(Arc::new(Collect::default()), 10).with_max_channels(3);
        engine.presence_add("busy", "u").await.unwrap();
        engine
            .publish(message("busy", "old but occupied"))
            .await
            .unwrap();
        // Within one millisecond the name breaks the tie: c0 and c1 go either way.
        for n in 0..5 {
            engine
                .publish(message(&format!("c{n}"), "hi"))
                .await
                .unwrap();
        }
        let mut kept: Vec<_> = engine.channels.read().keys().cloned().collect();
        kept.sort();
        assert_eq!(
            kept,
            ["busy", "c3", "c4"],
            "members' channels stay, quiet ones go"
        );
        let last = HistoryQuery::Last { limit: 10 };
        assert!(
            engine
                .history("c0", last)
                .await
                .unwrap()
                .messages
                .is_empty()
        );
        assert_eq!(
            engine.history("busy", last).await.unwrap().messages.len(),
            1
        );
        // Publishing to a forgotten channel starts it again (ids keep rising with time).
        engine.publish(message("c0", "again")).await.unwrap();
        assert_eq!(engine.history("c0", last).await.unwrap().messages.len(), 1);
    }

    #[tokio::test]
    async fn empty_channels_are_forgotten_and_kept_ones_are_not() {
        let engine = MemoryEngine::new(Arc::new(Collect::default()), 10);
        for n in 0..100 {
            let channel = format!("c{n}");
            assert!(engine.presence_add(&channel, "u").await.unwrap());
            assert!(engine.presence_remove(&channel, "u").await.unwrap());
        }
        assert!(engine.channels.read().is_empty());
        engine.presence_add("kept", "u").await.unwrap();
        engine.publish(message("kept", "hi")).await.unwrap();
        engine.presence_remove("kept", "u").await.unwrap();
        let history = engine
            .history("kept", HistoryQuery::Last { limit: 5 })
            .await
            .unwrap();
        assert_eq!(history.messages.len(), 1);
    }

    #[tokio::test]
    async fn ids_increase_and_history_reads_every_way() {
        let sink = Arc::new(Collect::default());
        let engine = MemoryEngine::new(sink.clone(), 4);
        let mut ids = Vec::new();
        for n in 0..6 {
            ids.push(
                engine
                    .publish(message("c", &n.to_string()))
                    .await
                    .unwrap()
                    .id,
            );
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sink.0.lock().len(), 6);
        let texts =
            |h: History| -> Vec<String> { h.messages.into_iter().map(|m| m.message).collect() };
        let last = engine
            .history("c", HistoryQuery::Last { limit: 2 })
            .await
            .unwrap();
        assert!(last.more);
        assert_eq!(texts(last), ["4", "5"]);
        let since = engine
            .history(
                "c",
                HistoryQuery::Since {
                    after: ids[3],
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert!(!since.gap);
        assert_eq!(texts(since), ["4", "5"]);
        let since_dropped = engine
            .history(
                "c",
                HistoryQuery::Since {
                    after: ids[0],
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert!(since_dropped.gap, "message 1 was dropped from a ring of 4");
        let capped = engine
            .history(
                "c",
                HistoryQuery::Since {
                    after: ids[1],
                    limit: 2,
                },
            )
            .await
            .unwrap();
        assert!(capped.gap);
        assert_eq!(texts(capped), ["4", "5"]);
        let before = engine
            .history(
                "c",
                HistoryQuery::Before {
                    before: ids[4],
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert!(!before.more);
        assert_eq!(texts(before), ["2", "3"]);
    }
}
