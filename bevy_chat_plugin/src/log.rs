//! [`ChatLog`]: the last lines of every channel, ready for a UI.

use std::collections::{HashMap, VecDeque};

use bevy::prelude::*;
use protocol::MessageId;

/// One line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// The channel message's id (`None` for direct messages and system lines). Lines with an
    /// id are kept in id order and each id once.
    pub id: Option<MessageId>,
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

/// Which log a line belongs to. Channels, direct messages and the chat's own lines are apart:
/// no channel name can stand for the other two.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChatLogKey {
    /// A channel's messages and its join, leave and error lines.
    Channel(String),
    /// Direct messages to and from this player.
    Direct,
    /// Connection changes, broadcasts, name changes and errors that concern no channel.
    System,
}

impl ChatLogKey {
    /// The key of a channel's log.
    pub fn channel(name: impl Into<String>) -> Self {
        Self::Channel(name.into())
    }

    /// The channel name, for channel logs.
    pub fn as_channel(&self) -> Option<&str> {
        match self {
            Self::Channel(name) => Some(name),
            Self::Direct | Self::System => None,
        }
    }
}

/// The last [`ChatPlugin::log_lines`](crate::ChatPlugin::log_lines) lines of every channel this
/// client has been in, of direct messages and of the chat's own lines (see [`ChatLogKey`]).
/// Updated in `PreUpdate`.
///
/// Channel messages are kept in id order, each once: a page of older messages asked for with
/// [`Chat::history`](crate::Chat::history) lands before the newer lines, and messages seen
/// twice (a page that overlaps, a resume after a reconnect) are kept once. A full log keeps the
/// newest lines: a page older than everything kept is dropped, so page back through a log sized
/// for it.
#[derive(Resource, Debug, Default)]
pub struct ChatLog {
    capacity: usize,
    channels: HashMap<String, VecDeque<ChatLine>>,
    direct: VecDeque<ChatLine>,
    system: VecDeque<ChatLine>,
    /// Keys in the order they were first seen (for tabs).
    order: Vec<ChatLogKey>,
    /// Increases whenever a line is added (cheap change detection for UIs).
    revision: u64,
}

impl ChatLog {
    /// An empty log keeping `capacity` lines per key.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ..Default::default()
        }
    }

    /// Adds a line, in id order when it has an id (a line whose id is already kept is
    /// ignored), else at the end; drops the oldest line past capacity.
    pub fn push(&mut self, key: &ChatLogKey, line: ChatLine) {
        match key {
            ChatLogKey::Channel(name) => self.push_to_channel(name, line),
            ChatLogKey::Direct | ChatLogKey::System => {
                if !self.order.contains(key) {
                    self.order.push(key.clone());
                }
                let lines = match key {
                    ChatLogKey::Direct => &mut self.direct,
                    _ => &mut self.system,
                };
                if insert(lines, line, self.capacity) {
                    self.revision += 1;
                }
            }
        }
    }

    /// [`ChatLog::push`] to a channel's log, without building a key (the per-message path).
    pub(crate) fn push_to_channel(&mut self, channel: &str, line: ChatLine) {
        let lines = match self.channels.get_mut(channel) {
            Some(lines) => lines,
            None => {
                self.order.push(ChatLogKey::channel(channel));
                self.channels.entry(channel.to_owned()).or_default()
            }
        };
        if insert(lines, line, self.capacity) {
            self.revision += 1;
        }
    }

    /// Adds a system line (local time, no id) at the end of a log.
    pub fn system(&mut self, key: &ChatLogKey, text: impl Into<String>) {
        self.push(
            key,
            ChatLine {
                id: None,
                ts: now_ms(),
                kind: ChatLineKind::System(text.into()),
            },
        );
    }

    /// A log's lines, oldest first.
    pub fn lines(&self, key: &ChatLogKey) -> impl Iterator<Item = &ChatLine> {
        let lines = match key {
            ChatLogKey::Channel(name) => self.channels.get(name.as_str()),
            ChatLogKey::Direct => Some(&self.direct),
            ChatLogKey::System => Some(&self.system),
        };
        lines.into_iter().flatten()
    }

    /// A channel's lines, oldest first.
    pub fn channel_lines(&self, channel: &str) -> impl Iterator<Item = &ChatLine> {
        self.channels.get(channel).into_iter().flatten()
    }

    /// Logs with lines, in the order first seen.
    pub fn keys(&self) -> &[ChatLogKey] {
        &self.order
    }

    /// Changes whenever a line is added.
    pub fn revision(&self) -> u64 {
        self.revision
    }
}

/// Inserts a line where [`insertion_point`] says, dropping the oldest past `capacity`.
/// Returns whether the line was kept.
fn insert(lines: &mut VecDeque<ChatLine>, line: ChatLine, capacity: usize) -> bool {
    let Some(mut at) = insertion_point(lines, line.id) else {
        return false;
    };
    if lines.len() >= capacity {
        if at == 0 {
            return false;
        }
        lines.pop_front();
        at -= 1;
    }
    lines.insert(at, line);
    true
}

/// Where a line goes: after every kept line with a smaller id and before the first with a
/// greater one (system lines stay where they are); `None` when its id is already kept. Live
/// lines go to the end in one step.
fn insertion_point(lines: &VecDeque<ChatLine>, id: Option<MessageId>) -> Option<usize> {
    let Some(id) = id else {
        return Some(lines.len());
    };
    let mut at = lines.len();
    for (index, line) in lines.iter().enumerate().rev() {
        match line.id {
            Some(kept) if kept == id => return None,
            Some(kept) if kept > id => at = index,
            Some(_) => break,
            None => {}
        }
    }
    Some(at)
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

    fn texts(log: &ChatLog, key: &ChatLogKey) -> Vec<String> {
        log.lines(key)
            .map(|line| match &line.kind {
                ChatLineKind::System(text) => text.clone(),
                ChatLineKind::Message { text, .. } => text.clone(),
            })
            .collect()
    }

    fn message(seq: u64) -> ChatLine {
        ChatLine {
            id: Some(MessageId {
                ms: 1_000 + seq,
                seq: 0,
            }),
            ts: 1_000 + seq,
            kind: ChatLineKind::Message {
                user_id: "u".into(),
                username: "Ann".into(),
                text: format!("m{seq}"),
            },
        }
    }

    #[test]
    fn keeps_the_last_lines_per_key() {
        let mut log = ChatLog::new(2);
        let a = ChatLogKey::channel("a");
        for n in 0..3 {
            log.system(&a, format!("{n}"));
        }
        log.system(&ChatLogKey::channel("b"), "x");
        assert_eq!(texts(&log, &a), ["1", "2"]);
        assert_eq!(log.keys(), [a, ChatLogKey::channel("b")]);
        assert_eq!(log.revision(), 4);
    }

    #[test]
    fn a_channel_named_like_the_system_log_stays_a_channel() {
        let mut log = ChatLog::new(10);
        log.system(&ChatLogKey::System, "Connected");
        log.system(&ChatLogKey::channel("@system"), "You joined @system");
        log.system(&ChatLogKey::channel("@direct"), "You joined @direct");
        assert_eq!(texts(&log, &ChatLogKey::System), ["Connected"]);
        assert_eq!(texts(&log, &ChatLogKey::Direct), Vec::<String>::new());
        assert_eq!(
            texts(&log, &ChatLogKey::channel("@system")),
            ["You joined @system"]
        );
    }

    #[test]
    fn history_pages_land_in_id_order_once() {
        let mut log = ChatLog::new(100);
        let lobby = ChatLogKey::channel("lobby");
        log.system(&lobby, "You joined lobby");
        for seq in [5, 6] {
            log.push(&lobby, message(seq));
        }
        log.system(&lobby, "Bob joined");
        // An older page, newest first or oldest first, overlapping what is kept.
        for seq in [4, 2, 3, 5, 1] {
            log.push(&lobby, message(seq));
        }
        log.push(&lobby, message(7));
        log.push(&lobby, message(6));
        assert_eq!(
            texts(&log, &lobby),
            [
                "You joined lobby",
                "m1",
                "m2",
                "m3",
                "m4",
                "m5",
                "m6",
                "Bob joined",
                "m7"
            ]
        );
    }

    #[test]
    fn a_full_log_keeps_the_newest_lines() {
        let mut log = ChatLog::new(3);
        let lobby = ChatLogKey::channel("lobby");
        for seq in [4, 5, 6] {
            log.push(&lobby, message(seq));
        }
        log.push(&lobby, message(1));
        log.push(&lobby, message(7));
        assert_eq!(texts(&log, &lobby), ["m5", "m6", "m7"]);
        log.push(&lobby, message(6));
        assert_eq!(log.revision(), 4);
    }
}
