//! The in-process engine: one node, no dependencies. History lives in a capped ring per channel.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use protocol::{BroadcastMessage, ChatMessage, DirectMessage, MessageId, PresenceUser};

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
}

#[derive(Default)]
struct ChannelState {
    last_id: MessageId,
    history: VecDeque<Arc<ChatMessage>>,
    /// Id of the newest message dropped from history, if any was.
    trimmed_through: Option<MessageId>,
    /// Present users and how many `presence_add` calls hold them.
    present: HashMap<String, usize>,
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
        }
    }

    fn channel(&self, channel: &str) -> Arc<Mutex<ChannelState>> {
        if let Some(state) = self.channels.read().get(channel) {
            return state.clone();
        }
        self.channels
            .write()
            .entry(channel.to_owned())
            .or_default()
            .clone()
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
        let state = self.channel(&new.channel);
        let mut state = state.lock();
        let id = Self::next_id(state.last_id, now_ms());
        state.last_id = id;
        let message = Arc::new(ChatMessage {
            username: new.username,
            message: new.message,
            channel: new.channel,
            id,
            user_id: new.user_id,
            ts: id.ms,
        });
        if self.history_size > 0 {
            if state.history.len() == self.history_size {
                state.trimmed_through = state.history.pop_front().map(|m| m.id);
            }
            state.history.push_back(message.clone());
        }
        // Deliver under the channel lock so that deliveries leave in id order.
        self.sink.deliver(Delivery::Message(message.clone()));
        Ok(message)
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
        let state = self.channel(channel);
        let mut state = state.lock();
        let count = state.present.entry(user_id.to_owned()).or_default();
        *count += 1;
        Ok(*count == 1)
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
        if *count == 0 {
            state.present.remove(user_id);
            return Ok(true);
        }
        Ok(false)
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

    async fn ready(&self) -> bool {
        true
    }
}
