//! Names of the engine's Redis keys and pub/sub channels, all under the configured prefix.

/// Key and channel names of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix` (e.g. `chat:`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Pub/sub channel of a chat channel (messages and presence events).
    pub fn channel(&self, channel: &str) -> String {
        format!("{}chan:{channel}", self.prefix)
    }

    /// Pub/sub channel of direct messages (every node listens and delivers to its users).
    pub fn direct(&self) -> String {
        format!("{}direct", self.prefix)
    }

    /// Pub/sub channel of operator broadcasts.
    pub fn broadcast(&self) -> String {
        format!("{}broadcast", self.prefix)
    }

    /// A user's mute (JSON `[until_ms, reason]`, expiring with the mute).
    pub fn mute(&self, user: &str) -> String {
        format!("{}mute:{user}", self.prefix)
    }

    /// A user's ban (JSON `[until_ms, reason]`, expiring with the ban).
    pub fn ban(&self, user: &str) -> String {
        format!("{}ban:{user}", self.prefix)
    }

    /// Set of the users a user blocks.
    pub fn blocks(&self, user: &str) -> String {
        format!("{}blocks:{user}", self.prefix)
    }

    /// Hash user → version of its block list (grows with every change).
    pub fn block_versions(&self) -> String {
        format!("{}block-versions", self.prefix)
    }

    /// Stream of a channel's history.
    pub fn history(&self, channel: &str) -> String {
        format!("{}history:{channel}", self.prefix)
    }

    /// Id of the newest message trimmed from a channel's history.
    pub fn trimmed(&self, channel: &str) -> String {
        format!("{}trimmed:{channel}", self.prefix)
    }

    /// Hash user → display name.
    pub fn names(&self) -> String {
        format!("{}names", self.prefix)
    }

    /// Hash lower-cased name → user (unique names).
    pub fn name_owners(&self) -> String {
        format!("{}name-owners", self.prefix)
    }

    /// Hash user → lower-cased name it holds (unique names).
    pub fn name_keys(&self) -> String {
        format!("{}name-keys", self.prefix)
    }

    /// Hash user → number of nodes where the user is in `channel`.
    pub fn presence(&self, channel: &str) -> String {
        format!("{}presence:{channel}", self.prefix)
    }

    /// Set of `channel\nuser` a node holds presence for.
    pub fn node_presence(&self, node: &str) -> String {
        format!("{}node-presence:{node}", self.prefix)
    }

    /// Hash user → number of nodes where the user has a connection.
    pub fn online(&self) -> String {
        format!("{}online", self.prefix)
    }

    /// Set of users with a connection on a node.
    pub fn node_users(&self, node: &str) -> String {
        format!("{}node-users:{node}", self.prefix)
    }

    /// Sorted set node → last heartbeat (ms).
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// A node's liveness key (expires when it stops beating).
    pub fn alive(&self, node: &str) -> String {
        format!("{}alive:{node}", self.prefix)
    }

    /// Hash user id → SHA-256 of the guest secret (shared guest accounts).
    pub fn guests(&self) -> String {
        format!("{}guests", self.prefix)
    }
}
