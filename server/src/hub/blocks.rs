//! The block list of one user, cached on each node that has a connection of that user and
//! shared by all of them: the hub checks it before delivering another user's channel message,
//! direct message or typing indicator to them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::engine::BlockSnapshot;

/// Who one user blocks, as this node knows it.
#[derive(Debug, Default)]
pub struct BlockList {
    /// The list is not empty. While it is false (nobody blocked, the common case) a delivery
    /// check costs one atomic load and one branch.
    any: AtomicBool,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    users: HashSet<String>,
    /// Version of the engine's list this is (see [`BlockSnapshot::version`]).
    version: u64,
    /// The list came from the engine (until then it is empty).
    loaded: bool,
}

impl BlockList {
    /// Whether this user blocks `sender`.
    pub fn blocks(&self, sender: &str) -> bool {
        self.any.load(Ordering::Acquire) && self.state.read().users.contains(sender)
    }

    /// Whether this user blocks anybody.
    pub fn blocks_anyone(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Whether the list was read from the engine or delivered by it already.
    pub fn loaded(&self) -> bool {
        self.state.read().loaded
    }

    /// Applies a list from the engine (read when a connection opens, returned by a change, or
    /// delivered to every node) unless the one held is newer. With `reset`, applies it anyway
    /// (read again after missed changes). Returns whether it was applied.
    pub fn apply(&self, snapshot: &BlockSnapshot, reset: bool) -> bool {
        let mut state = self.state.write();
        if state.loaded && snapshot.version <= state.version && !reset {
            return false;
        }
        state.users = snapshot.users.iter().cloned().collect();
        state.version = snapshot.version;
        state.loaded = true;
        self.any.store(!state.users.is_empty(), Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(version: u64, users: &[&str]) -> BlockSnapshot {
        BlockSnapshot {
            version,
            users: users.iter().map(|u| (*u).to_owned()).collect(),
        }
    }

    #[test]
    fn only_newer_lists_apply() {
        let list = BlockList::default();
        assert!(!list.blocks("b") && !list.loaded());
        assert!(list.apply(&snapshot(3, &["b", "c"]), false));
        assert!(list.blocks("b") && list.blocks("c") && !list.blocks("d"));
        // A read from before the last change arrives late: ignored.
        assert!(!list.apply(&snapshot(2, &["b"]), false));
        assert!(list.blocks("c"));
        assert!(list.apply(&snapshot(4, &[]), false));
        assert!(!list.blocks("b"));
        // After missed changes the read is the truth, whatever its version.
        assert!(list.apply(&snapshot(0, &["e"]), true));
        assert!(list.blocks("e"));
    }

    #[test]
    fn the_first_read_applies_even_at_version_zero() {
        let list = BlockList::default();
        assert!(list.apply(&snapshot(0, &[]), false));
        assert!(list.loaded() && !list.blocks("b"));
    }
}
