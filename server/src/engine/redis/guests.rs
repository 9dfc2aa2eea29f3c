//! Guest accounts in Redis, so that a guest created on one node logs in on any node.

use redis::AsyncCommands;

use super::{Conn, Keys};
use crate::identity::guests::{GuestStore, GuestStoreError, SecretHash};

/// Guests in Redis: one key per user id (its slot) holding the hex SHA-256 of the secret.
pub struct RedisGuestStore {
    conn: Conn,
    keys: Keys,
}

impl RedisGuestStore {
    /// A store on the engine's connection.
    pub(super) fn new(conn: Conn, keys: Keys) -> Self {
        Self { conn, keys }
    }
}

/// Errors worth retrying (Redis unreachable, timed out, loading its data, failing over) are
/// [`GuestStoreError::Unavailable`]; the rest (e.g. a key of the wrong type) are failures.
fn failed(error: redis::RedisError) -> GuestStoreError {
    if matches!(error.retry_method(), redis::RetryMethod::NoRetry) {
        GuestStoreError::Failed(error.to_string())
    } else {
        GuestStoreError::Unavailable(error.to_string())
    }
}

#[async_trait::async_trait]
impl GuestStore for RedisGuestStore {
    async fn insert(&self, user_id: &str, secret: SecretHash) -> Result<(), GuestStoreError> {
        let _: bool = self
            .conn
            .clone()
            .set_nx(self.keys.guest(user_id), secret.to_hex())
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn secret_hash(&self, user_id: &str) -> Result<Option<SecretHash>, GuestStoreError> {
        let hex: Option<String> = self
            .conn
            .clone()
            .get(self.keys.guest(user_id))
            .await
            .map_err(failed)?;
        Ok(hex.and_then(|h| SecretHash::from_hex(&h)))
    }
}
