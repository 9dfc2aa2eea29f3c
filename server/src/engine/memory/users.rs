//! Display names on one node ([`UserStore`]): kept in memory and, with a journal, in the
//! embedded database.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::engine::sqlite::{Journal, Pending, Write};
use crate::engine::{EngineError, NAMES_KEPT, UserStore, now_ms};

/// Names in this process.
#[derive(Default)]
pub struct MemoryUsers {
    names: Mutex<Names>,
    journal: Option<Journal>,
}

#[derive(Default)]
struct Names {
    by_user: HashMap<String, String>,
    /// Lower-cased name → the user holding it (consulted when names are unique).
    owners: HashMap<String, String>,
    /// User → its last names, newest first, with when each was set.
    history: HashMap<String, VecDeque<(String, u64)>>,
}

impl MemoryUsers {
    /// Names kept in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps every name in `journal` as well; fill from it with [`restore`](Self::restore).
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Fills the store with the names the database held, and their histories (newest first).
    pub fn restore(
        &self,
        names: Vec<(String, String)>,
        history: HashMap<String, Vec<(String, u64)>>,
    ) {
        let mut held = self.names.lock();
        for (user_id, names) in history {
            held.history
                .insert(user_id, names.into_iter().take(NAMES_KEPT).collect());
        }
        for (user_id, name) in names {
            held.owners
                .entry(name.to_lowercase())
                .or_insert_with(|| user_id.clone());
            held.by_user.insert(user_id, name);
        }
    }

    /// Display names of `users` (None where unset), in order, read under one lock.
    pub fn names_of(&self, users: &[String]) -> Vec<Option<String>> {
        let names = self.names.lock();
        users
            .iter()
            .map(|u| names.by_user.get(u).cloned())
            .collect()
    }

    /// Sets a name (claimed when `unique`), queuing it to the journal under the lock so that
    /// the database gets names in the order they were set.
    fn change(
        &self,
        user_id: &str,
        name: &str,
        unique: bool,
    ) -> Result<Option<Pending>, EngineError> {
        let mut names = self.names.lock();
        let key = name.to_lowercase();
        if unique
            && let Some(owner) = names.owners.get(&key)
            && owner != user_id
        {
            return Err(EngineError::NameTaken(name.to_owned()));
        }
        let at_ms = now_ms();
        let pending = self
            .journal
            .as_ref()
            .map(|journal| {
                journal.write(Write::Name {
                    user_id: user_id.to_owned(),
                    name: name.to_owned(),
                    at_ms,
                })
            })
            .transpose()?;
        let history = names.history.entry(user_id.to_owned()).or_default();
        history.push_front((name.to_owned(), at_ms));
        history.truncate(NAMES_KEPT);
        if let Some(old) = names.by_user.insert(user_id.to_owned(), name.to_owned()) {
            let old = old.to_lowercase();
            if names.owners.get(&old).is_some_and(|owner| owner == user_id) {
                names.owners.remove(&old);
            }
        }
        names
            .owners
            .entry(key)
            .or_insert_with(|| user_id.to_owned());
        Ok(pending)
    }
}

#[async_trait]
impl UserStore for MemoryUsers {
    async fn set_name(&self, user_id: &str, name: &str, unique: bool) -> Result<(), EngineError> {
        match self.change(user_id, name, unique)? {
            Some(pending) => pending.committed().await,
            None => Ok(()),
        }
    }

    async fn name(&self, user_id: &str) -> Result<Option<String>, EngineError> {
        Ok(self.names.lock().by_user.get(user_id).cloned())
    }

    async fn name_history(&self, user_id: &str) -> Result<Vec<(String, u64)>, EngineError> {
        let names = self.names.lock();
        Ok(names
            .history
            .get(user_id)
            .map(|history| history.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn find_by_name(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Option<Vec<(String, String)>>, EngineError> {
        let wanted = query.to_lowercase();
        let names = self.names.lock();
        let mut found: Vec<(String, String)> = names
            .by_user
            .iter()
            .filter(|(_, name)| name.to_lowercase().contains(&wanted))
            .map(|(user, name)| (user.clone(), name.clone()))
            .collect();
        found.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        found.truncate(limit);
        Ok(Some(found))
    }
}
