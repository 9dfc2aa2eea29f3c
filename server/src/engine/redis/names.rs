//! Display names in Redis: one key per user (its slot) and, with unique names, a claim per
//! lower-cased name (the name's slot), taken before the user's name is written. A node carries
//! the names of the users connected to it, so a message costs no read of the name: a change is
//! published on the bus to every node, and after a bus outage the names are read again.

use std::sync::atomic::Ordering;

use redis::AsyncCommands;

use super::wire::Wire;
use super::{Shared, scripts, unavailable};
use crate::engine::{EngineError, NAMES_KEPT, now_ms};

impl Shared {
    /// [`crate::engine::UserStore::set_name`].
    pub(super) async fn set_name(
        &self,
        user_id: &str,
        name: &str,
        unique: bool,
    ) -> Result<(), EngineError> {
        let keys = &self.keys;
        let mut conn = self.conn.clone();
        let old: Option<String> = conn.get(keys.name(user_id)).await.map_err(unavailable)?;
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
        // The console's index of names (one hash: `lower-cased name \n user` → name).
        let index = keys.names_index();
        let mut indexing = redis::pipe();
        if let Some(old) = old.filter(|old| old != name) {
            indexing.hdel(&index, index_field(&old, user_id)).ignore();
        }
        indexing
            .hset(&index, index_field(name, user_id), name)
            .ignore();
        let () = indexing.query_async(&mut conn).await.map_err(unavailable)?;
        // The name history (the user's slot, as its name): newest first, the last few kept.
        let entry = serde_json::json!([now_ms(), name]).to_string();
        let history = keys.name_history(user_id);
        let () = redis::pipe()
            .atomic()
            .lpush(&history, entry)
            .ignore()
            .ltrim(&history, 0, NAMES_KEPT as isize - 1)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // Every node holding the user carries the new name from now on.
        self.publish(keys.bus(), Wire::name(user_id, name))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// A name change from the bus: the name this node carries for `user`, if connected here.
    pub(super) fn name_changed(&self, user: &str, name: String) {
        if self.local_users.lock().contains_key(user) {
            self.local_names.lock().insert(user.to_owned(), name);
        }
    }

    /// Reads the names of the users connected here again (name changes published while the bus
    /// was away were missed), then trusts the cache again.
    pub(super) async fn reload_names(&self) {
        let users: Vec<String> = self.local_users.lock().keys().cloned().collect();
        let mut conn = self.conn.clone();
        for user in users {
            match conn.get::<_, Option<String>>(self.keys.name(&user)).await {
                Ok(Some(name)) => self.name_changed(&user, name),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not read names again; reading per message");
                    return;
                }
            }
        }
        self.names_fresh.store(true, Ordering::Release);
    }

    /// [`crate::engine::UserStore::name`]; re-asserts the name of a user connected here when Redis
    /// lost it.
    pub(super) async fn name(&self, user_id: &str) -> Result<Option<String>, EngineError> {
        if self.names_fresh.load(Ordering::Acquire)
            && let Some(name) = self.local_names.lock().get(user_id)
        {
            // Carried by this node: every change reaches it on the bus.
            return Ok(Some(name.clone()));
        }
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

#[async_trait::async_trait]
impl crate::engine::UserStore for super::RedisEngine {
    async fn set_name(&self, user_id: &str, name: &str, unique: bool) -> Result<(), EngineError> {
        self.shared.set_name(user_id, name, unique).await
    }

    async fn name(&self, user_id: &str) -> Result<Option<String>, EngineError> {
        self.shared.name(user_id).await
    }

    async fn name_history(&self, user_id: &str) -> Result<Vec<(String, u64)>, EngineError> {
        let entries: Vec<String> = self
            .conn()
            .lrange(
                self.shared.keys.name_history(user_id),
                0,
                NAMES_KEPT as isize - 1,
            )
            .await
            .map_err(unavailable)?;
        Ok(entries
            .iter()
            .filter_map(|entry| serde_json::from_str::<(u64, String)>(entry).ok())
            .map(|(ms, name)| (name, ms))
            .collect())
    }

    async fn find_by_name(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Option<Vec<(String, String)>>, EngineError> {
        let pattern = format!("*{}*\n*", glob_escape(&query.to_lowercase()));
        let index = self.shared.keys.names_index();
        let mut conn = self.conn();
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        for _ in 0..SCAN_ROUNDS {
            let (next, pairs): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(&index)
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for pair in pairs.chunks_exact(2) {
                if let Some((_, user)) = pair[0].rsplit_once('\n') {
                    found.push((user.to_owned(), pair[1].clone()));
                }
            }
            cursor = next;
            if cursor == 0 || found.len() >= limit {
                break;
            }
        }
        found.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        found.truncate(limit);
        Ok(Some(found))
    }
}

/// Rounds of `HSCAN` a name search makes at most (1,000 entries each).
const SCAN_ROUNDS: usize = 100;

/// A name's field in the index: the name lower-cased, then the user (names hold no newline).
fn index_field(name: &str, user: &str) -> String {
    format!("{}\n{user}", name.to_lowercase())
}

/// `text` matched literally in a Redis glob pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
