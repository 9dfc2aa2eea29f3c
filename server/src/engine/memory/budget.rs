//! The memory engine's byte budget for history: what every kept message costs, the total held,
//! and the order messages were stored in, so that the oldest of any channel goes first.

use std::collections::VecDeque;
use std::mem::size_of;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use protocol::ChatMessage;

/// One kept message in a channel's ring: the message and its place in the budget's queue.
pub(super) struct Kept {
    /// The message, shared with deliveries.
    pub message: Arc<ChatMessage>,
    /// Its storage sequence number (see [`Budget::store`]).
    pub seq: u64,
}

/// Approximate heap bytes one kept message holds: the capacity of its four strings (text,
/// username, channel, user id), the `ChatMessage` struct with the two reference counts of its
/// `Arc`, its slot in the channel's ring ([`Kept`]) and its entry in the budget's queue.
/// Allocator overhead and per-channel state (bounded by `--memory-max-channels`) are not
/// counted: 20,000 messages of 500 four-byte emoji count 42.6 MiB (2,231 bytes each) and grew
/// the process by 45.2 MiB, so real use runs about 6 % above the budget.
pub(super) fn kept_bytes(message: &ChatMessage) -> usize {
    message.message.capacity()
        + message.username.capacity()
        + message.channel.capacity()
        + message.user_id.capacity()
        + size_of::<ChatMessage>()
        + 2 * size_of::<usize>()
        + size_of::<Kept>()
}

/// What the queue holds for one stored message.
struct Entry {
    /// The message's channel (shared with the channel's state).
    channel: Arc<str>,
    /// Its [`kept_bytes`] while kept, 0 once it left history (its entry is then only waiting
    /// to reach the front of the queue).
    bytes: usize,
}

/// Bytes each queue entry costs, kept or not: counted too, so that entries of messages that
/// left by the per-channel count cap cannot pile up unbounded behind an old kept one.
pub(super) const ENTRY_BYTES: usize = size_of::<Entry>();

/// History bytes held across all channels, and every stored message in storage order.
///
/// Lock order: a channel's lock, then this one (never the other way round; nothing else is
/// locked while this is held).
pub(super) struct Budget {
    /// Most bytes to hold.
    limit: usize,
    /// Bytes held: the kept messages plus every queue entry.
    held: usize,
    /// Sequence number of the queue's front entry.
    front_seq: u64,
    /// One entry per stored message not yet at the front, oldest first. The front entry is
    /// always a kept message (entries of messages already gone are popped on reaching it).
    queue: VecDeque<Entry>,
    /// Reports `held`.
    gauge: Gauge,
}

impl Budget {
    /// An empty budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            held: 0,
            front_seq: 0,
            queue: VecDeque::new(),
            gauge: Gauge::default(),
        }
    }

    /// Changes the most bytes to hold (checked on the next store).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Reports the bytes held to `gauge` from now on.
    pub fn report_to(&mut self, gauge: Gauge) {
        gauge.set(self.held as i64);
        self.gauge = gauge;
    }

    /// Records a message newly kept in `channel`; returns its sequence number.
    pub fn store(&mut self, channel: &Arc<str>, bytes: usize) -> u64 {
        let seq = self.front_seq + self.queue.len() as u64;
        self.queue.push_back(Entry {
            channel: channel.clone(),
            bytes,
        });
        self.held += bytes + ENTRY_BYTES;
        self.gauge.set(self.held as i64);
        seq
    }

    /// Records that the message `seq` left history (by any cause).
    pub fn release(&mut self, seq: u64) {
        let Some(entry) = seq
            .checked_sub(self.front_seq)
            .and_then(|index| self.queue.get_mut(index as usize))
        else {
            return;
        };
        self.held -= entry.bytes;
        entry.bytes = 0;
        while self.queue.front().is_some_and(|entry| entry.bytes == 0) {
            self.queue.pop_front();
            self.front_seq += 1;
            self.held -= ENTRY_BYTES;
        }
        self.gauge.set(self.held as i64);
    }

    /// Whether more than the limit is held.
    pub fn over(&self) -> bool {
        self.held > self.limit
    }

    /// When over the limit, the oldest kept message: its channel and sequence number.
    pub fn oldest_if_over(&self) -> Option<(Arc<str>, u64)> {
        if !self.over() {
            return None;
        }
        let front = self.queue.front()?;
        Some((front.channel.clone(), self.front_seq))
    }

    /// Whether the message `seq` is still kept.
    pub fn is_kept(&self, seq: u64) -> bool {
        seq.checked_sub(self.front_seq)
            .and_then(|index| self.queue.get(index as usize))
            .is_some_and(|entry| entry.bytes > 0)
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
    }

    /// Entries in the queue (kept messages and those waiting to be popped).
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_released_messages_leave_once_they_reach_the_front() {
        let mut budget = Budget::new(1000);
        let a: Arc<str> = Arc::from("a");
        let first = budget.store(&a, 100);
        let second = budget.store(&a, 100);
        let third = budget.store(&a, 100);
        assert_eq!(budget.held(), 300 + 3 * ENTRY_BYTES);
        budget.release(second);
        assert_eq!(budget.queued(), 3, "not at the front yet");
        assert_eq!(budget.held(), 200 + 3 * ENTRY_BYTES);
        budget.release(first);
        assert_eq!(budget.queued(), 1);
        assert_eq!(budget.held(), 100 + ENTRY_BYTES);
        assert!(budget.is_kept(third) && !budget.is_kept(first));
        budget.release(first);
        budget.release(third);
        assert_eq!((budget.held(), budget.queued()), (0, 0));
        assert_eq!(budget.store(&a, 1), 3, "sequence numbers go on");
    }
}
