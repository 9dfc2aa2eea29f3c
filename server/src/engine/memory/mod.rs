//! The in-process engine: one node, no dependencies. History lives in a capped ring per channel,
//! and all rings together hold at most `--memory-history-bytes` (the oldest messages of any
//! channel go first).
//!
//! With a [`Journal`] (the embedded database, [`super::sqlite`]) it keeps what it holds across
//! restarts: every change is queued to the database in the order it was made, a request is
//! answered once its change is committed, and [`MemoryEngine::restore`] reads it back on start.

mod audit;
mod budget;
mod moderation;
mod restore;
mod users;

pub use audit::MemoryAudit;
pub use moderation::MemoryModeration;
pub use restore::sweep_every;
pub use users::MemoryUsers;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use protocol::{BroadcastMessage, ChatMessage, DirectMessage, MessageId, PresenceUser};

use crate::metrics::{Limit, Metrics};

use self::budget::{Budget, Kept, kept_bytes};
use super::sqlite::{Journal, Pending, Write};
use super::{
    Announcement, Broker, Delivery, DeliverySink, EngineError, History, HistoryQuery, NewMessage,
    NodeInfo, PresenceManager, now_ms,
};

/// Channels, their history and presence, and who is online, kept in this process: the broker
/// and presence manager of a single node.
pub struct MemoryEngine {
    sink: Arc<dyn DeliverySink>,
    history_size: usize,
    channels: RwLock<HashMap<String, Arc<Mutex<ChannelState>>>>,
    /// Names shown in presence lists.
    users: Arc<MemoryUsers>,
    online: Mutex<HashMap<String, usize>>,
    max_channels: usize,
    /// History bytes held in all channels. Lock order: `channels`, then a channel, then this.
    budget: Mutex<Budget>,
    metrics: Option<Arc<Metrics>>,
    /// Messages older than this are dropped from history (by [`MemoryEngine::sweep`]).
    max_age_ms: u64,
    /// Where changes are kept across restarts, if anywhere.
    journal: Option<Journal>,
}

#[derive(Default)]
struct ChannelState {
    /// The channel's name (each budget entry shares it).
    name: Arc<str>,
    last_id: MessageId,
    history: VecDeque<Kept>,
    /// Removed from the map: whoever still holds it must fetch a fresh entry.
    retired: bool,
    /// Id of the newest message dropped from history (by the count cap or the byte budget), if
    /// any was: a `since` read from before it reports a gap.
    trimmed_through: Option<MessageId>,
    /// Present users and how many `presence_add` calls hold them.
    present: HashMap<String, usize>,
    /// When the channel was last created or published to (Unix ms), for eviction.
    last_active_ms: u64,
    /// `trimmed_through` as last queued to the journal.
    trim_saved: Option<MessageId>,
}

impl MemoryEngine {
    /// An engine delivering to `sink`, keeping `history_size` messages per channel, naming
    /// present users from `users`.
    pub fn new(sink: Arc<dyn DeliverySink>, history_size: usize, users: Arc<MemoryUsers>) -> Self {
        Self {
            sink,
            history_size,
            channels: RwLock::default(),
            users,
            online: Mutex::default(),
            max_channels: usize::MAX,
            budget: Mutex::new(Budget::new(usize::MAX)),
            metrics: None,
            max_age_ms: u64::MAX,
            journal: None,
        }
    }

    /// Drops messages older than `age` from history (checked by [`sweep`](Self::sweep)).
    pub fn with_max_age(mut self, age: std::time::Duration) -> Self {
        self.max_age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Keeps every change in `journal` (the embedded database) as well; read it back with
    /// [`restore`](Self::restore).
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Whether the journal (if any) accepts writes.
    fn journal_healthy(&self) -> bool {
        self.journal.as_ref().is_none_or(Journal::healthy)
    }

    /// Queues `write` to the journal, if there is one: await the result before answering.
    fn journal(&self, write: impl FnOnce() -> Write) -> Result<Option<Pending>, EngineError> {
        self.journal
            .as_ref()
            .map(|journal| journal.write(write()))
            .transpose()
    }

    /// Holds at most `bytes` of history in all channels together (as counted by `kept_bytes`):
    /// past it the oldest messages of any channel are dropped first.
    pub fn with_history_bytes(self, bytes: usize) -> Self {
        self.budget.lock().set_limit(bytes);
        self
    }

    /// Reports history bytes held (`chat_memory_history_bytes`) and messages dropped for the
    /// byte budget (`chat_limit_hits_total{limit="history_bytes"}`) to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.budget
            .lock()
            .report_to(metrics.memory_history_bytes.clone());
        self.metrics = Some(metrics);
        self
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
                let mut state = state.lock();
                state.retired = true;
                let mut budget = self.budget.lock();
                for kept in state.history.drain(..) {
                    budget.release(kept.seq);
                }
                if let Some(journal) = &self.journal {
                    journal.write_unwaited(Write::Forget {
                        channel: state.name.clone(),
                    });
                }
                tracing::debug!(
                    channel = name,
                    "forgot a quiet channel's history (cap reached)"
                );
            }
        }
        let state = Arc::new(Mutex::new(ChannelState {
            name: Arc::from(channel),
            last_active_ms: now_ms(),
            ..Default::default()
        }));
        channels.insert(channel.to_owned(), state.clone());
        state
    }

    fn existing(&self, channel: &str) -> Option<Arc<Mutex<ChannelState>>> {
        self.channels.read().get(channel).cloned()
    }

    /// Drops the oldest kept messages, of any channel, until the history bytes held are within
    /// the budget. Called with no lock held; takes each channel's lock, then the budget's.
    fn enforce_budget(&self) {
        loop {
            let Some((channel, seq)) = self.budget.lock().oldest_if_over() else {
                return;
            };
            let state = self.existing(&channel);
            let mut state = state.as_ref().map(|state| state.lock());
            let dropped = match state.as_deref_mut() {
                Some(state) if state.history.front().is_some_and(|kept| kept.seq == seq) => {
                    if let Some(kept) = state.history.pop_front() {
                        state.trimmed_through = Some(kept.message.id);
                    }
                    true
                }
                _ => false,
            };
            let mut budget = self.budget.lock();
            if dropped {
                budget.release(seq);
                if let Some(metrics) = &self.metrics {
                    metrics.limit(Limit::HistoryBytes);
                }
            } else if budget.is_kept(seq) {
                // Gone from its channel without being released: cannot happen while every
                // removal releases under the channel's lock, but never loop on it.
                tracing::warn!(
                    channel = &*channel,
                    "history budget entry without its message"
                );
                budget.release(seq);
            }
            // Otherwise another caller dropped it meanwhile: look at the new oldest.
        }
    }

    /// Appends a message to the channel's history within the count cap. Returns whether all
    /// history now holds more bytes than the budget (call `enforce_budget` unlocked).
    fn keep(&self, state: &mut ChannelState, message: &Arc<ChatMessage>) -> bool {
        if self.history_size == 0 {
            return false;
        }
        let mut budget = self.budget.lock();
        if state.history.len() >= self.history_size
            && let Some(oldest) = state.history.pop_front()
        {
            state.trimmed_through = Some(oldest.message.id);
            budget.release(oldest.seq);
        }
        let seq = budget.store(&state.name, kept_bytes(message));
        state.history.push_back(Kept {
            message: message.clone(),
            seq,
        });
        budget.over()
    }

    /// The id after `last` for a message accepted at `now` (the Redis stream rule).
    pub(super) fn next_id(last: MessageId, now: u64) -> MessageId {
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
            let first_after = kept.partition_point(|k| k.message.id <= after);
            let missing = kept.len() - first_after;
            // Too many missed: send the newest `limit`, so that history meets live traffic
            // without a hole, and say that older ones were missed.
            let start = first_after + missing.saturating_sub(limit);
            let dropped = state.trimmed_through.is_some_and(|t| t > after);
            (start, kept.len(), dropped || start > first_after)
        }
        HistoryQuery::Before { before, limit } => {
            let end = kept.partition_point(|k| k.message.id < before);
            (end.saturating_sub(limit), end, false)
        }
    };
    History {
        messages: kept
            .range(start..end)
            .map(|k| (*k.message).clone())
            .collect(),
        more: start > 0 && !matches!(query, HistoryQuery::Since { .. }),
        gap,
    }
}

#[async_trait]
impl Broker for MemoryEngine {
    async fn subscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn publish(&self, new: NewMessage) -> Result<Arc<ChatMessage>, EngineError> {
        let (message, over_budget, pending) = self.with_channel(&new.channel.clone(), |state| {
            let now = now_ms();
            let id = Self::next_id(state.last_id, now);
            let message = Arc::new(new.stored(id));
            // Queued under the channel lock, so that the database gets a channel's messages in
            // id order; refused (nothing delivered) when the database is that far behind.
            let pending = match self.history_size {
                0 => None,
                _ => self.journal(|| Write::Message(message.clone()))?,
            };
            state.last_id = id;
            state.last_active_ms = now;
            let over_budget = self.keep(state, &message);
            // Deliver under the channel lock so that deliveries leave in id order.
            self.sink.deliver(Delivery::Message(message.clone()));
            Ok::<_, EngineError>((message, over_budget, pending))
        })?;
        if over_budget {
            // Other channels' locks are taken here, with this one's released: no lock cycle.
            self.enforce_budget();
        }
        // Acknowledged only once committed (others may see it a moment before).
        if let Some(pending) = pending {
            pending.committed().await?;
        }
        Ok(message)
    }

    async fn history(&self, channel: &str, query: HistoryQuery) -> Result<History, EngineError> {
        Ok(self
            .existing(channel)
            .map(|state| read_history(&state.lock(), query))
            .unwrap_or_default())
    }

    async fn announce(&self, announcement: Announcement) -> Result<(), EngineError> {
        self.sink.deliver(announcement.into());
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

    async fn announce_node(&self, mut info: NodeInfo) -> Result<(), EngineError> {
        info.node = "local".to_owned();
        self.sink.deliver(Delivery::Node(Arc::new(info)));
        Ok(())
    }

    async fn ready(&self) -> bool {
        self.journal_healthy()
    }
}

#[async_trait]
impl PresenceManager for MemoryEngine {
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
        if state.present.is_empty() && state.history.is_empty() && state.trimmed_through.is_none() {
            // Nothing left to remember: forget the channel, so that joining many made-up
            // channel names does not grow memory. (A channel whose history the byte budget
            // emptied is kept, so that a `since` resume still learns of its gap.)
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

    async fn online_nodes(&self, user_id: &str) -> Result<Vec<String>, EngineError> {
        let online = self
            .online
            .lock()
            .get(user_id)
            .is_some_and(|count| *count > 0);
        Ok(if online {
            vec!["local".to_owned()]
        } else {
            Vec::new()
        })
    }

    async fn channels_of(&self, user_id: &str) -> Result<Vec<String>, EngineError> {
        let states: Vec<(String, Arc<Mutex<ChannelState>>)> = self
            .channels
            .read()
            .iter()
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect();
        let mut channels: Vec<String> = states
            .into_iter()
            .filter(|(_, state)| state.lock().present.contains_key(user_id))
            .map(|(name, _)| name)
            .collect();
        channels.sort();
        Ok(channels)
    }

    async fn presence(&self, channel: &str) -> Result<Vec<PresenceUser>, EngineError> {
        let Some(state) = self.existing(channel) else {
            return Ok(Vec::new());
        };
        let mut users: Vec<String> = state.lock().present.keys().cloned().collect();
        users.sort();
        let names = self.users.names_of(&users);
        Ok(users
            .into_iter()
            .zip(names)
            .map(|(user_id, username)| PresenceUser { user_id, username })
            .collect())
    }
}

#[cfg(test)]
mod tests;
