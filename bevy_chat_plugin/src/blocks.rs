//! [`ChatBlockList`]: the users this player blocked, as the server keeps them.

use bevy::prelude::*;

/// The users this player blocked, as last reported by the server (read on every connect and
/// after each [`Chat::block`](crate::Chat::block) / [`Chat::unblock`](crate::Chat::unblock)).
/// The server stops delivering their channel messages, direct messages and typing to this
/// player, on every connection and node; this list is for showing it (e.g. "Unblock" in a
/// menu). Updated in `PreUpdate` together with [`ChatBlockListChanged`](crate::ChatBlockListChanged).
///
/// ```
/// use bevy_chat_plugin::ChatBlockList;
///
/// let blocked = ChatBlockList::default();
/// assert!(!blocked.contains("6f1c0e2a"));
/// assert_eq!(blocked.iter().count(), 0);
/// ```
#[derive(Resource, Debug, Default, Clone, PartialEq, Eq)]
pub struct ChatBlockList {
    /// Sorted user ids.
    user_ids: Vec<String>,
}

impl ChatBlockList {
    /// Whether a user is blocked.
    pub fn contains(&self, user_id: &str) -> bool {
        self.user_ids
            .binary_search_by(|id| id.as_str().cmp(user_id))
            .is_ok()
    }

    /// The blocked user ids, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.user_ids.iter().map(String::as_str)
    }

    /// Replaces the list with the server's.
    pub(crate) fn set(&mut self, mut user_ids: Vec<String>) {
        user_ids.sort_unstable();
        user_ids.dedup();
        self.user_ids = user_ids;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_work_whatever_order_the_server_used() {
        let mut list = ChatBlockList::default();
        list.set(vec!["c".into(), "a".into(), "b".into(), "a".into()]);
        assert!(list.contains("a") && list.contains("b") && list.contains("c"));
        assert!(!list.contains("d"));
        assert_eq!(list.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
