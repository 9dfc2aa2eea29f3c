//! History kept within its caps over time ([`MemoryEngine::sweep`]: the age cap, and the trims
//! queued to the database), and the history read back from the database on start
//! ([`MemoryEngine::restore`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::MemoryEngine;
use crate::engine::now_ms;
use crate::engine::sqlite::{ChannelSnapshot, Write};

impl MemoryEngine {
    /// Drops messages past the age cap from every channel, and queues to the database what each
    /// channel dropped since the last sweep (by any cap): the file is trimmed in the
    /// background, not on every message.
    pub fn sweep(&self, now: u64) {
        let cutoff = now.saturating_sub(self.max_age_ms);
        let channels: Vec<_> = self.channels.read().values().cloned().collect();
        for state in channels {
            let mut state = state.lock();
            if state.retired {
                continue;
            }
            if state
                .history
                .front()
                .is_some_and(|kept| kept.message.id.ms < cutoff)
            {
                let mut budget = self.budget.lock();
                while let Some(kept) = state
                    .history
                    .pop_front_if(|kept| kept.message.id.ms < cutoff)
                {
                    state.trimmed_through = Some(kept.message.id);
                    budget.release(kept.seq);
                }
            }
            if let (Some(journal), Some(through)) = (&self.journal, state.trimmed_through)
                && state.trim_saved != Some(through)
                && journal.write_unwaited(Write::Trim {
                    channel: state.name.clone(),
                    through,
                })
            {
                state.trim_saved = Some(through);
            }
        }
    }

    /// Fills a new engine with the history the database held (already within the caps of
    /// count and age; the byte budget is applied here, to the oldest messages of any channel
    /// first, as when they were published).
    pub fn restore(&self, channels: Vec<ChannelSnapshot>) {
        // The quietest first: past the channel cap, they are the ones forgotten.
        let mut channels: Vec<_> = channels
            .into_iter()
            .map(|c| {
                let active = c.messages.last().map(|m| m.id).max(c.trimmed_through);
                (active, c)
            })
            .collect();
        channels.sort_by_key(|(active, _)| *active);
        let mut messages = Vec::new();
        for (active, channel) in channels {
            let state = self.create(&channel.name);
            let mut state = state.lock();
            state.trimmed_through = channel.trimmed_through;
            state.last_id = active.unwrap_or_default();
            if let Some(active) = active {
                state.last_active_ms = active.ms;
            }
            drop(state);
            messages.extend(channel.messages);
        }
        // Kept in the order they were accepted, whatever their channel, so that the byte
        // budget drops the oldest first.
        messages.sort_by_key(|m| m.id);
        for message in messages {
            let Some(state) = self.existing(&message.channel) else {
                continue; // forgotten for the channel cap meanwhile
            };
            let mut state = state.lock();
            let over = self.keep(&mut state, &Arc::new(message));
            drop(state);
            if over {
                self.enforce_budget();
            }
        }
    }
}

/// Sweeps `engine` every `period` until it is dropped.
pub async fn sweep_every(engine: Weak<MemoryEngine>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.sweep(now_ms());
        // The trims just queued (and a forgotten channel's) are committed now, not with the
        // next message.
        if let Some(journal) = engine.journal.clone() {
            drop(engine);
            journal.flush().await;
        }
    }
}
