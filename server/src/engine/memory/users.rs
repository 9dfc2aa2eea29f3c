//! What the memory engine keeps about users: names, mutes and bans, block lists. Each change is
//! made under its lock and queued to the journal there, so the database gets changes in the
//! order they were made.

use std::collections::{BTreeSet, HashMap};

use super::MemoryEngine;
use crate::engine::sqlite::{Pending, Write};
use crate::engine::{BlockOutcome, BlockSnapshot, EngineError};
use crate::moderation::{Sanction, Standing};

/// Every user's block list, and the version of the newest change (of any list).
#[derive(Default)]
pub(super) struct Blocks {
    pub(super) lists: HashMap<String, BTreeSet<String>>,
    pub(super) version: u64,
}

impl Blocks {
    pub(super) fn snapshot(&self, user: &str) -> BlockSnapshot {
        BlockSnapshot {
            version: self.version,
            users: self
                .lists
                .get(user)
                .map(|list| list.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// Display names.
#[derive(Default)]
pub(super) struct Names {
    pub(super) by_user: HashMap<String, String>,
    /// Lower-cased name → user holding it (consulted when names are unique).
    pub(super) owners: HashMap<String, String>,
}

/// A change whose commit (if there is a journal) is still to be awaited.
pub(super) type Change<T> = Result<(T, Option<Pending>), EngineError>;

impl MemoryEngine {
    /// Sets a name (claimed when `unique`).
    pub(super) fn change_name(&self, user_id: &str, name: &str, unique: bool) -> Change<()> {
        let mut names = self.names.lock();
        let key = name.to_lowercase();
        if unique
            && let Some(owner) = names.owners.get(&key)
            && owner != user_id
        {
            return Err(EngineError::NameTaken(name.to_owned()));
        }
        let pending = self.journal(|| Write::Name {
            user_id: user_id.to_owned(),
            name: name.to_owned(),
        })?;
        if let Some(old) = names.by_user.insert(user_id.to_owned(), name.to_owned()) {
            let old = old.to_lowercase();
            if names.owners.get(&old).is_some_and(|owner| owner == user_id) {
                names.owners.remove(&old);
            }
        }
        names.owners.entry(key).or_insert_with(|| user_id.to_owned());
        Ok(((), pending))
    }

    /// Records a mute, ban or their lifting (a kick changes nothing kept).
    pub(super) fn change_standing(&self, user_id: &str, sanction: &Sanction) -> Change<()> {
        let mut standings = self.standings.lock();
        let mut standing = standings.get(user_id).cloned().unwrap_or_default();
        match sanction {
            Sanction::Mute { until_ms, reason } => {
                standing.muted = Some((*until_ms, reason.clone()));
            }
            Sanction::Unmute => standing.muted = None,
            Sanction::Ban { until_ms, reason } => {
                standing.banned = Some((*until_ms, reason.clone()));
            }
            Sanction::Unban => standing.banned = None,
            Sanction::Kick { .. } => return Ok(((), None)),
        }
        let pending = self.journal(|| Write::Standing {
            user_id: user_id.to_owned(),
            standing: standing.clone(),
        })?;
        if standing == Standing::default() {
            standings.remove(user_id);
        } else {
            standings.insert(user_id.to_owned(), standing);
        }
        Ok(((), pending))
    }

    /// Adds `target` to `user`'s list unless it holds `max` others; the new list goes to the
    /// hub under the lock, so that lists arrive in the order they were made.
    pub(super) fn change_block(&self, user: &str, target: &str, max: usize) -> Change<BlockOutcome> {
        let mut blocks = self.blocks.lock();
        let list = blocks.lists.get(user);
        let len = list.map_or(0, BTreeSet::len);
        if !list.is_some_and(|list| list.contains(target)) && len >= max {
            return Ok((BlockOutcome::TooMany, None));
        }
        let mut users: Vec<String> = list.map(|l| l.iter().cloned().collect()).unwrap_or_default();
        if let Err(at) = users.binary_search_by(|u| u.as_str().cmp(target)) {
            users.insert(at, target.to_owned());
        }
        let pending = self.journal(|| Write::Blocks {
            user_id: user.to_owned(),
            users: users.clone(),
            version: blocks.version + 1,
        })?;
        blocks.version += 1;
        blocks
            .lists
            .entry(user.to_owned())
            .or_default()
            .insert(target.to_owned());
        let snapshot = blocks.snapshot(user);
        self.deliver_blocks(user, &snapshot);
        Ok((BlockOutcome::Blocked(snapshot), pending))
    }

    /// Removes `target` from `user`'s list.
    pub(super) fn change_unblock(&self, user: &str, target: &str) -> Change<BlockSnapshot> {
        let mut blocks = self.blocks.lock();
        let users: Vec<String> = blocks
            .lists
            .get(user)
            .map(|list| list.iter().filter(|u| *u != target).cloned().collect())
            .unwrap_or_default();
        let pending = self.journal(|| Write::Blocks {
            user_id: user.to_owned(),
            users,
            version: blocks.version + 1,
        })?;
        if let Some(list) = blocks.lists.get_mut(user) {
            list.remove(target);
            if list.is_empty() {
                blocks.lists.remove(user);
            }
        }
        blocks.version += 1;
        let snapshot = blocks.snapshot(user);
        self.deliver_blocks(user, &snapshot);
        Ok((snapshot, pending))
    }
}

/// Waits for a change's commit, then hands back its result.
pub(super) async fn committed<T>(change: Change<T>) -> Result<T, EngineError> {
    let (value, pending) = change?;
    if let Some(pending) = pending {
        pending.committed().await?;
    }
    Ok(value)
}
