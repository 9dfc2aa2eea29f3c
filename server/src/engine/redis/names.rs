//! Display names in Redis: one key per user (its slot) and, with unique names, a claim per
//! lower-cased name (the name's slot), taken before the user's name is written.

use redis::AsyncCommands;

use super::{Shared, scripts, unavailable};
use crate::engine::EngineError;

impl Shared {
    /// [`crate::engine::Engine::set_name`].
    pub(super) async fn set_name(
        &self,
        user_id: &str,
        name: &str,
        unique: bool,
    ) -> Result<(), EngineError> {
        let keys = &self.keys;
        let mut conn = self.conn.clone();
        if unique {
            // Claimed in the name's slot first, then recorded in the user's: a name is never
            // held by two users. The old name is given up last.
            let lower = name.to_lowercase();
            let claimed: i64 = scripts::CLAIM_NAME
                .key(keys.name_owner(&lower))
                .arg(user_id)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if claimed != 1 {
                return Err(EngineError::NameTaken(name.to_owned()));
            }
            let (old, ()): (Option<String>, ()) = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(keys.name_key(user_id))
                .arg(&lower)
                .arg("GET")
                .set(keys.name(user_id), name)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if let Some(old) = old.filter(|old| *old != lower) {
                let _: i64 = scripts::RELEASE_NAME
                    .key(keys.name_owner(&old))
                    .arg(user_id)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
        } else {
            let () = conn
                .set(keys.name(user_id), name)
                .await
                .map_err(unavailable)?;
        }
        self.local_names
            .lock()
            .insert(user_id.to_owned(), name.to_owned());
        Ok(())
    }

    /// [`crate::engine::Engine::name`]; re-asserts the name of a user connected here when Redis
    /// lost it.
    pub(super) async fn name(&self, user_id: &str) -> Result<Option<String>, EngineError> {
        let mut conn = self.conn.clone();
        let key = self.keys.name(user_id);
        let name: Option<String> = conn.get(&key).await.map_err(unavailable)?;
        if name.is_none() {
            // Redis came back without its data: the name of a user connected here is known.
            let cached = self.local_names.lock().get(user_id).cloned();
            if let Some(cached) = cached {
                let _: bool = conn.set_nx(&key, &cached).await.map_err(unavailable)?;
                return Ok(Some(cached));
            }
        }
        if let Some(name) = &name
            && self.local_users.lock().contains_key(user_id)
        {
            self.local_names
                .lock()
                .insert(user_id.to_owned(), name.clone());
        }
        Ok(name)
    }
}
