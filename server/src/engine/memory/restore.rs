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
            {
                journal.write_unwaited(Write::Trim {
                    channel: state.name.clone(),
                    through,
                });
                state.trim_saved = Some(through);
            }
        }
    }

    /// Fills a new engine with the history the database held (already within the caps of
    /// count and age; the byte budget is applied here).
    pub fn restore(&self, mut channels: Vec<ChannelSnapshot>) {
        // The quietest first: past the channel cap, they are the ones forgotten.
        channels.sort_by_key(|c| c.messages.last().map(|m| m.id));
        for channel in channels {
            let state = self.create(&channel.name);
            let mut state = state.lock();
            state.trimmed_through = channel.trimmed_through;
            state.last_id = channel
                .messages
                .last()
                .map(|m| m.id)
                .max(channel.trimmed_through)
                .unwrap_or_default();
            if let Some(last) = channel.messages.last() {
                state.last_active_ms = last.id.ms;
            }
            for message in channel.messages {
                self.keep(&mut state, &Arc::new(message));
            }
        }
        self.enforce_budget();
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
