//! Mutes, bans and block lists on one node ([`ModerationStore`]): kept in memory and, with a
//! journal, in the embedded database. Each change is made under its lock and queued to the
//! journal there, so the database gets changes in the order they were made.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::engine::sqlite::{Journal, Pending, Write};
use crate::engine::{
    BlockOutcome, BlockSnapshot, Delivery, DeliverySink, EngineError, ModerationStore,
};
use crate::moderation::{Sanction, Standing};

/// Moderation state in this process.
pub struct MemoryModeration {
    sink: Arc<dyn DeliverySink>,
    standings: Mutex<HashMap<String, Standing>>,
    /// Block lists. Changes are delivered under this lock, in order.
    blocks: Mutex<Blocks>,
    journal: Option<Journal>,
}

/// Every user's block list, and the version of the newest change (of any list).
#[derive(Default)]
struct Blocks {
    lists: HashMap<String, BTreeSet<String>>,
    version: u64,
}

impl Blocks {
    fn snapshot(&self, user: &str) -> BlockSnapshot {
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

impl MemoryModeration {
    /// Moderation delivering its actions and block lists to `sink`.
    pub fn new(sink: Arc<dyn DeliverySink>) -> Self {
        Self {
            sink,
            standings: Mutex::default(),
            blocks: Mutex::default(),
            journal: None,
        }
    }

    /// Keeps every change in `journal` as well; fill from it with [`restore`](Self::restore).
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Fills the store with the mutes, bans and block lists the database held.
    pub fn restore(
        &self,
        standings: Vec<(String, Standing)>,
        blocks: HashMap<String, Vec<String>>,
        blocks_version: u64,
    ) {
        self.standings.lock().extend(standings);
        let mut held = self.blocks.lock();
        held.version = blocks_version;
        for (user, list) in blocks {
            held.lists.insert(user, list.into_iter().collect());
        }
    }

    fn journal(&self, write: impl FnOnce() -> Write) -> Result<Option<Pending>, EngineError> {
        self.journal
            .as_ref()
            .map(|journal| journal.write(write()))
            .transpose()
    }

    /// Records a mute, ban or their lifting (a kick changes nothing kept).
    fn change_standing(
        &self,
        user_id: &str,
        sanction: &Sanction,
    ) -> Result<Option<Pending>, EngineError> {
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
            Sanction::Kick { .. } => return Ok(None),
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
        Ok(pending)
    }

    /// Sets `user`'s list to `users` as a new version: queued to the journal, then handed to
    /// the hub, under the lock, so that lists arrive (and are kept) in the order they were made.
    fn change_blocks(
        &self,
        blocks: &mut Blocks,
        user: &str,
        users: BTreeSet<String>,
    ) -> Result<(BlockSnapshot, Option<Pending>), EngineError> {
        let pending = self.journal(|| Write::Blocks {
            user_id: user.to_owned(),
            users: users.iter().cloned().collect(),
            version: blocks.version + 1,
        })?;
        blocks.version += 1;
        if users.is_empty() {
            blocks.lists.remove(user);
        } else {
            blocks.lists.insert(user.to_owned(), users);
        }
        let snapshot = blocks.snapshot(user);
        self.sink.deliver(Delivery::Blocks {
            user: Arc::from(user),
            blocks: Arc::new(snapshot.clone()),
            reset: false,
        });
        Ok((snapshot, pending))
    }
}

/// Waits for a change's commit (if it went to a journal).
async fn committed(pending: Option<Pending>) -> Result<(), EngineError> {
    match pending {
        Some(pending) => pending.committed().await,
        None => Ok(()),
    }
}

#[async_trait]
impl ModerationStore for MemoryModeration {
    async fn moderate(&self, user_id: &str, sanction: Sanction) -> Result<(), EngineError> {
        let pending = self.change_standing(user_id, &sanction)?;
        self.sink.deliver(Delivery::Sanction {
            user: Arc::from(user_id),
            sanction: Arc::new(sanction),
        });
        committed(pending).await
    }

    async fn standing(&self, user_id: &str) -> Result<Standing, EngineError> {
        Ok(self
            .standings
            .lock()
            .get(user_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn block(
        &self,
        user: &str,
        target: &str,
        max: usize,
    ) -> Result<BlockOutcome, EngineError> {
        let (snapshot, pending) = {
            let mut blocks = self.blocks.lock();
            let mut list = blocks.lists.get(user).cloned().unwrap_or_default();
            if !list.contains(target) && list.len() >= max {
                return Ok(BlockOutcome::TooMany);
            }
            list.insert(target.to_owned());
            self.change_blocks(&mut blocks, user, list)?
        };
        committed(pending).await?;
        Ok(BlockOutcome::Blocked(snapshot))
    }

    async fn unblock(&self, user: &str, target: &str) -> Result<BlockSnapshot, EngineError> {
        let (snapshot, pending) = {
            let mut blocks = self.blocks.lock();
            let mut list = blocks.lists.get(user).cloned().unwrap_or_default();
            list.remove(target);
            self.change_blocks(&mut blocks, user, list)?
        };
        committed(pending).await?;
        Ok(snapshot)
    }

    async fn blocked(&self, user: &str) -> Result<BlockSnapshot, EngineError> {
        Ok(self.blocks.lock().snapshot(user))
    }
}
