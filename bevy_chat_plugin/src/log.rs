//! [`ChatLog`]: the last lines of every channel, ready for a UI.

use std::collections::{HashMap, VecDeque};

use bevy::prelude::*;

/// One line of a channel's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Server time (chat lines) or local time (system lines), ms since the Unix epoch.
    pub ts: u64,
    /// What the line is.
    pub kind: ChatLineKind,
}

/// Kinds of log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLineKind {
    /// A chat message.
    Message {
        /// Sender's user id.
        user_id: String,
        /// Sender's display name.
        username: String,
        /// The text.
        text: String,
    },
    /// A line from the chat itself: joins, leaves, errors, connection changes.
    System(String),
}

/// The last [`ChatPlugin::log_lines`](crate::ChatPlugin::log_lines) lines of every channel this
/// client has been in, plus direct messages and broadcasts. Updated in `PreUpdate`.
#[derive(Resource, Debug, Default)]
pub struct ChatLog {
    capacity: usize,
    channels: HashMap<String, VecDeque<ChatLine>>,
    /// Channel names in the order they were first seen (for tabs).
    order: Vec<String>,
    /// Increases whenever a line is added (cheap change detection for UIs).
    revision: u64,
}

/// Log key of direct messages.
pub const DIRECT_LOG: &str = "@direct";

impl ChatLog {
    /// An empty log keeping `capacity` lines per channel.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ..Default::default()
        }
    }

    /// Adds a line to a channel's log, dropping the oldest past capacity.
    pub fn push(&mut self, channel: &str, line: ChatLine) {
        let lines = match self.channels.get_mut(channel) {
            Some(lines) => lines,
            None => {
                self.order.push(channel.to_owned());
                self.channels.entry(channel.to_owned()).or_default()
            }
        };
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
        self.revision += 1;
    }

    /// Adds a system line.
    pub fn system(&mut self, channel: &str, text: impl Into<String>) {
        self.push(
            channel,
            ChatLine {
                ts: now_ms(),
                kind: ChatLineKind::System(text.into()),
            },
        );
    }

    /// A channel's lines, oldest first.
    pub fn lines(&self, channel: &str) -> impl Iterator<Item = &ChatLine> {
        self.channels.get(channel).into_iter().flatten()
    }

    /// Channels with lines, in the order first seen.
    pub fn channels(&self) -> &[String] {
        &self.order
    }

    /// Changes whenever a line is added.
    pub fn revision(&self) -> u64 {
        self.revision
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_per_channel() {
        let mut log = ChatLog::new(2);
        for n in 0..3 {
            log.system("a", format!("{n}"));
        }
        log.system("b", "x");
        let a: Vec<_> = log
            .lines("a")
            .map(|l| match &l.kind {
                ChatLineKind::System(t) => t.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(log.channels(), ["a", "b"]);
        assert_eq!(log.revision(), 4);
    }
}
