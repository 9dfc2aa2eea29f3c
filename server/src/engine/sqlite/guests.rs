//! Guest accounts in the database (the embedded engine's [`GuestStore`]).

use std::collections::HashMap;
use std::path::Path;

use parking_lot::RwLock;

use super::schema::Meta;
use super::{Journal, Write};
use crate::engine::EngineError;
use crate::identity::guests::{GuestStore, GuestStoreError, SecretHash, read_guest_file};

/// Guests in memory, each persisted in the database before its login is answered.
pub struct SqliteGuestStore {
    journal: Journal,
    guests: RwLock<HashMap<String, SecretHash>>,
    /// The guest file imported, if one was.
    imported_from: Option<String>,
}

impl SqliteGuestStore {
    /// A store holding `guests` (read from the database, with the guest file imported if one
    /// was) and writing new ones to `journal`.
    pub fn new(
        journal: Journal,
        guests: HashMap<String, SecretHash>,
        imported_from: Option<String>,
    ) -> Self {
        Self {
            journal,
            guests: RwLock::new(guests),
            imported_from,
        }
    }

    /// Imports the accounts of the guest file an earlier version kept (`guests.jsonl`), once:
    /// the database records that it did, and the file is not read again. Returns how many
    /// accounts were new.
    pub async fn import_once(&mut self, file: &Path) -> Result<usize, String> {
        if self.imported_from.is_some() || !file.exists() {
            return Ok(0);
        }
        let owned = file.to_path_buf();
        let found = tokio::task::spawn_blocking(move || read_guest_file(&owned))
            .await
            .map_err(|e| format!("guest file task failed: {e}"))?
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let mut imported = 0;
        let mut last = None;
        for (user_id, secret) in found {
            if self.guests.read().contains_key(&user_id) {
                continue;
            }
            let pending = self
                .journal
                .write(Write::Guest {
                    user_id: user_id.clone(),
                    secret,
                })
                .map_err(detail)?;
            self.guests.write().insert(user_id, secret);
            imported += 1;
            // In steps, so that the queue never fills (each write behind the last committed).
            if imported % IMPORT_STEP == 0 {
                pending.committed().await.map_err(detail)?;
            } else {
                last = Some(pending);
            }
        }
        if let Some(pending) = last {
            pending.committed().await.map_err(detail)?;
        }
        // Recorded last: an import cut short is done again, whole, on the next start.
        self.journal
            .write(Write::Meta {
                key: Meta::GuestsImportedFrom,
                value: file.display().to_string(),
            })
            .map_err(detail)?
            .committed()
            .await
            .map_err(detail)?;
        self.imported_from = Some(file.display().to_string());
        tracing::info!(
            file = %file.display(),
            imported,
            "imported the guest file into the database; it is not read any more (keep it \
             until you no longer need to go back to an older version)"
        );
        Ok(imported)
    }
}

/// Guests imported between two waits for a commit.
const IMPORT_STEP: usize = 10_000;

/// What went wrong, in words (`unavailable`'s own message says only "try again shortly").
fn detail(error: EngineError) -> String {
    match error {
        EngineError::Unavailable(detail) | EngineError::Unconfirmed(detail) => detail,
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl GuestStore for SqliteGuestStore {
    async fn insert(&self, user_id: &str, secret: SecretHash) -> Result<(), GuestStoreError> {
        self.journal
            .write(Write::Guest {
                user_id: user_id.to_owned(),
                secret,
            })
            .map_err(|e| GuestStoreError::Unavailable(e.to_string()))?
            .committed()
            .await
            .map_err(|e| GuestStoreError::Unavailable(e.to_string()))?;
        // Known only once committed, so that a guest we answered for survives a restart.
        self.guests.write().insert(user_id.to_owned(), secret);
        Ok(())
    }

    async fn secret_hash(&self, user_id: &str) -> Result<Option<SecretHash>, GuestStoreError> {
        Ok(self.guests.read().get(user_id).copied())
    }
}
