//! Who is typing where: [`ChatTyping`], kept from [`ChatUserTyping`] messages for UIs.

use std::collections::HashMap;
use std::time::Duration;

use bevy::prelude::*;

use crate::messages::ChatUserTyping;

/// How long a `user_typing` counts after it arrived, unless that user's message comes first.
/// A client announces typing about every second and the server passes one per two seconds
/// (`--typing-interval`), so this covers one missed announcement.
pub const TYPING_SHOWN_FOR: Duration = Duration::from_secs(4);

/// Who is typing in each channel, for a "Ann is typing…" line. Updated in `PreUpdate` from
/// [`ChatUserTyping`] messages (by the plugin's receive system): a user counts for [`TYPING_SHOWN_FOR`] after the last one, or until
/// their next message in that channel arrives.
///
/// ```
/// use bevy_chat_plugin::ChatTyping;
///
/// let typing = ChatTyping::default();
/// assert_eq!(typing.describe("lobby"), None);
/// ```
#[derive(Resource, Debug, Default)]
pub struct ChatTyping {
    /// Channel → (user id → (name, when it stops counting)), in arrival order.
    channels: HashMap<String, Vec<Typist>>,
}

#[derive(Debug, Clone)]
struct Typist {
    user_id: String,
    username: String,
    until: Duration,
}

impl ChatTyping {
    /// Names of the users typing in a channel now, in the order they started.
    pub fn names(&self, channel: &str) -> impl Iterator<Item = &str> {
        self.channels
            .get(channel)
            .into_iter()
            .flatten()
            .map(|typist| typist.username.as_str())
    }

    /// Whether a user is typing in a channel now.
    pub fn is_typing(&self, channel: &str, user_id: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|typists| typists.iter().any(|t| t.user_id == user_id))
    }

    /// A line for people: `Ann is typing…`, `Ann and Bob are typing…`, `Ann, Bob and 2 others
    /// are typing…`; `None` when nobody is.
    pub fn describe(&self, channel: &str) -> Option<String> {
        let names: Vec<&str> = self.names(channel).collect();
        match names.as_slice() {
            [] => None,
            [one] => Some(format!("{one} is typing…")),
            [one, two] => Some(format!("{one} and {two} are typing…")),
            [one, two, three] => Some(format!("{one}, {two} and {three} are typing…")),
            [one, two, rest @ ..] => Some(format!(
                "{one}, {two} and {} others are typing…",
                rest.len()
            )),
        }
    }

    /// Records an announcement at `now` (time since the app started).
    pub(crate) fn started(&mut self, typing: &ChatUserTyping, now: Duration) {
        let typists = self.channels.entry(typing.channel.clone()).or_default();
        let until = now + TYPING_SHOWN_FOR;
        match typists.iter_mut().find(|t| t.user_id == typing.user_id) {
            Some(typist) => {
                typist.until = until;
                typist.username.clone_from(&typing.username);
            }
            None => typists.push(Typist {
                user_id: typing.user_id.clone(),
                username: typing.username.clone(),
                until,
            }),
        }
    }

    /// The user's message arrived: they are done typing it.
    pub(crate) fn stopped(&mut self, channel: &str, user_id: &str) {
        if let Some(typists) = self.channels.get_mut(channel) {
            typists.retain(|t| t.user_id != user_id);
            if typists.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// Whether anyone is typing anywhere.
    pub(crate) fn any(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Forgets a channel (this client left it).
    pub(crate) fn forget(&mut self, channel: &str) {
        self.channels.remove(channel);
    }

    /// Drops announcements that ran out at `now`. Returns whether anything changed.
    pub(crate) fn expire(&mut self, now: Duration) -> bool {
        let before: usize = self.channels.values().map(Vec::len).sum();
        self.channels.retain(|_, typists| {
            typists.retain(|t| t.until > now);
            !typists.is_empty()
        });
        before != self.channels.values().map(Vec::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typing(channel: &str, user_id: &str, username: &str) -> ChatUserTyping {
        ChatUserTyping {
            channel: channel.into(),
            user_id: user_id.into(),
            username: username.into(),
        }
    }

    #[test]
    fn names_last_until_they_expire_or_the_message_arrives() {
        let mut state = ChatTyping::default();
        let at = Duration::from_secs(10);
        state.started(&typing("lobby", "a", "Ann"), at);
        state.started(&typing("lobby", "b", "Bob"), at);
        state.started(&typing("other", "c", "Cy"), at);
        assert_eq!(
            state.describe("lobby").as_deref(),
            Some("Ann and Bob are typing…")
        );
        state.stopped("lobby", "a");
        assert_eq!(state.describe("lobby").as_deref(), Some("Bob is typing…"));
        // Bob announces again later: his time starts over.
        state.started(&typing("lobby", "b", "Bob"), at + Duration::from_secs(3));
        assert!(state.expire(at + TYPING_SHOWN_FOR));
        assert_eq!(state.describe("other"), None);
        assert_eq!(state.describe("lobby").as_deref(), Some("Bob is typing…"));
        assert!(state.expire(at + Duration::from_secs(3) + TYPING_SHOWN_FOR));
        assert_eq!(state.describe("lobby"), None);
        assert!(!state.expire(at + Duration::from_secs(60)));
    }

    #[test]
    fn many_typists_are_summed_up() {
        let mut state = ChatTyping::default();
        for (id, name) in [
            ("a", "Ann"),
            ("b", "Bob"),
            ("c", "Cy"),
            ("d", "Di"),
            ("e", "Ed"),
        ] {
            state.started(&typing("lobby", id, name), Duration::ZERO);
        }
        assert_eq!(
            state.describe("lobby").as_deref(),
            Some("Ann, Bob and 3 others are typing…")
        );
        state.forget("lobby");
        assert_eq!(state.names("lobby").count(), 0);
    }
}
