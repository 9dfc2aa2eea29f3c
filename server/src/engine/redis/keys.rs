//! Names of the engine's Redis keys and pub/sub channels, all under the configured prefix.
//!
//! Every name carries a hash tag (`{…}`), so that what one script or transaction touches lives
//! in one Redis Cluster slot: a channel's stream, gap marker, presence and pub/sub channel share
//! `{channel}`; a user's name, online nodes, mute, ban, block list and guest secret share
//! `{user}`; a node's records share `{node}`. Keys of different tags are never used in one
//! command, script or pipeline (`tests/redis_cluster_mode.rs` runs each against a cluster). The
//! layout is the same with a single Redis, where tags are just characters.

use std::borrow::Cow;

/// Key and channel names of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// The hash tag of an id: the id itself, or, when it could not be a tag (empty, holding a brace)
/// or could be mistaken for an encoded one (starting with `~`), `~` and its bytes in hex. Never
/// two ids with one tag.
pub fn tag(id: &str) -> Cow<'_, str> {
    if !id.is_empty() && !id.starts_with('~') && !id.contains(['{', '}']) {
        return Cow::Borrowed(id);
    }
    let mut encoded = String::with_capacity(1 + id.len() * 2);
    encoded.push('~');
    for byte in id.bytes() {
        encoded.push_str(&format!("{byte:02x}"));
    }
    Cow::Owned(encoded)
}

impl Keys {
    /// Names under `prefix` (e.g. `chat:`). A prefix must not hold a brace (it would become the
    /// hash tag of every key): the configuration refuses one.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn tagged(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{{{}}}", self.prefix, tag(id))
    }

    /// Pub/sub channel of a chat channel (messages and presence events).
    pub fn channel(&self, channel: &str) -> String {
        self.tagged("chan", channel)
    }

    /// Stream of a channel's history.
    pub fn history(&self, channel: &str) -> String {
        self.tagged("history", channel)
    }

    /// Id of the newest message trimmed from a channel's history.
    pub fn trimmed(&self, channel: &str) -> String {
        self.tagged("trimmed", channel)
    }

    /// Hash user → number of nodes where the user is in `channel`.
    pub fn presence(&self, channel: &str) -> String {
        self.tagged("presence", channel)
    }

    /// Set of `user\nnode` pairs behind a channel's presence counts (the channel's slot, so that
    /// a pair and its count move together in one script).
    pub fn presence_nodes(&self, channel: &str) -> String {
        self.tagged("presence-nodes", channel)
    }

    /// Set of `channel\nuser` a node holds presence for: the index of what to reap when it dies.
    pub fn node_presence(&self, node: &str) -> String {
        self.tagged("node-presence", node)
    }

    /// Pub/sub channel of one node: direct messages for users connected there.
    pub fn inbox(&self, node: &str) -> String {
        self.tagged("inbox", node)
    }

    /// Pub/sub channel every node listens to: broadcasts, sanctions and block lists.
    pub fn bus(&self) -> String {
        self.tagged("bus", "all")
    }

    /// Set of users with a connection on a node (to reap when it dies).
    pub fn node_users(&self, node: &str) -> String {
        self.tagged("node-users", node)
    }

    /// Sorted set node → last heartbeat (ms).
    pub fn nodes(&self) -> String {
        self.tagged("nodes", "all")
    }

    /// Stream of admin actions (the audit log).
    pub fn audit(&self) -> String {
        self.tagged("audit", "log")
    }

    /// A node's liveness key (expires when it stops beating).
    pub fn alive(&self, node: &str) -> String {
        self.tagged("alive", node)
    }

    /// A user's display name.
    pub fn name(&self, user: &str) -> String {
        self.tagged("name", user)
    }

    /// Hash `lower-cased name \n user` → name: the console's search of names.
    pub fn names_index(&self) -> String {
        self.tagged("names", "index")
    }

    /// A user's last names, newest first (JSON `[ms, name]` each).
    pub fn name_history(&self, user: &str) -> String {
        self.tagged("name-history", user)
    }

    /// The lower-cased name a user holds (unique names).
    pub fn name_key(&self, user: &str) -> String {
        self.tagged("name-key", user)
    }

    /// The user holding a lower-cased name (unique names; the name's own slot).
    pub fn name_owner(&self, lower_name: &str) -> String {
        self.tagged("name-owner", lower_name)
    }

    /// Set of the nodes a user has a connection on.
    pub fn online(&self, user: &str) -> String {
        self.tagged("online", user)
    }

    /// A user's mute (JSON `[until_ms, reason]`, expiring with the mute).
    pub fn mute(&self, user: &str) -> String {
        self.tagged("mute", user)
    }

    /// A user's ban (JSON `[until_ms, reason]`, expiring with the ban).
    pub fn ban(&self, user: &str) -> String {
        self.tagged("ban", user)
    }

    /// Set of the users a user blocks.
    pub fn blocks(&self, user: &str) -> String {
        self.tagged("blocks", user)
    }

    /// Version of a user's block list (grows with every change).
    pub fn block_version(&self, user: &str) -> String {
        self.tagged("block-version", user)
    }

    /// SHA-256 of a guest's secret (shared guest accounts).
    pub fn guest(&self, user: &str) -> String {
        self.tagged("guest", user)
    }
}

/// Redis Cluster's hash slot of a key: CRC16 (XMODEM) of its hash tag, modulo 16384.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(0) | None => bytes,
            Some(len) => &bytes[open + 1..open + 1 + len],
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_servers() {
        // `CLUSTER KEYSLOT` of these on Redis 7.0.
        assert_eq!(slot("chat:chan:{lobby}"), 10294);
        assert_eq!(slot("foo"), 12182);
    }

    #[test]
    fn what_a_script_touches_together_shares_a_slot() {
        let keys = Keys::new("chat:");
        for channel in ["lobby", "", "{x}", "a}b", "~7e", "ünïcode"] {
            let slot = slot(&keys.history(channel));
            assert_eq!(slot, self::slot(&keys.trimmed(channel)), "{channel:?}");
            assert_eq!(slot, self::slot(&keys.channel(channel)), "{channel:?}");
            assert_eq!(slot, self::slot(&keys.presence(channel)), "{channel:?}");
            assert_eq!(
                slot,
                self::slot(&keys.presence_nodes(channel)),
                "{channel:?}"
            );
        }
        for user in ["u1", "", "{", "}}", "~"] {
            let slot = slot(&keys.name(user));
            for key in [
                keys.name_key(user),
                keys.online(user),
                keys.mute(user),
                keys.ban(user),
                keys.blocks(user),
                keys.block_version(user),
                keys.guest(user),
            ] {
                assert_eq!(slot, self::slot(&key), "{user:?}: {key}");
            }
        }
    }

    #[test]
    fn tags_tell_every_id_apart() {
        let ids = ["a", "~a", "~61", "{a}", "", "~", "}", "a{"];
        let tags: std::collections::HashSet<String> =
            ids.iter().map(|id| tag(id).into_owned()).collect();
        assert_eq!(tags.len(), ids.len());
        assert!(
            tags.iter()
                .all(|t| !t.is_empty() && !t.contains(['{', '}']))
        );
    }
}
