//! Chat messages in Redis: publishing (append to the channel's stream and publish, in one
//! script, optionally waiting for replicas) and reading history.

use std::sync::Arc;

use protocol::{ChatMessage, MessageId};
use redis::AsyncCommands;

use super::entries::{Entry, entry_message, parse_id};
use super::{Shared, scripts, unavailable};
use crate::engine::{EngineError, History, HistoryQuery, NewMessage};

impl Shared {
    /// [`crate::engine::Engine::publish`]: appends and publishes in one script; with
    /// `wait_replicas`, acknowledges only once that many replicas confirmed it.
    pub(super) async fn publish_message(
        &self,
        new: NewMessage,
    ) -> Result<Arc<ChatMessage>, EngineError> {
        let settings = &self.settings;
        let mut invocation = scripts::PUBLISH.prepare_invoke();
        invocation
            .key(self.keys.history(&new.channel))
            .key(self.keys.channel(&new.channel))
            .key(self.keys.trimmed(&new.channel))
            .arg(settings.history_size.max(1))
            .arg(settings.history_max_age.as_millis() as u64)
            .arg(&new.user_id)
            .arg(&new.username)
            .arg(&new.message)
            .arg(&new.channel)
            .arg(self.publish_command());
        let id: String = if settings.wait_replicas == 0 {
            invocation
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?
        } else {
            let committer = self
                .committer
                .as_ref()
                .expect("a committer runs with --redis-wait-replicas");
            let mut command = redis::cmd("EVALSHA");
            command
                .arg(scripts::PUBLISH.get_hash())
                .arg(3)
                .arg(self.keys.history(&new.channel))
                .arg(self.keys.channel(&new.channel))
                .arg(self.keys.trimmed(&new.channel))
                .arg(settings.history_size.max(1))
                .arg(settings.history_max_age.as_millis() as u64)
                .arg(&new.user_id)
                .arg(&new.username)
                .arg(&new.message)
                .arg(&new.channel)
                .arg(self.publish_command());
            match committer
                .publish(command, &self.keys.history(&new.channel))
                .await
            {
                Ok(outcome) => outcome?,
                Err(_) => self.publish_alone_and_wait(&invocation).await?,
            }
        };
        let id = parse_id(&id)?;
        Ok(Arc::new(new.stored(id)))
    }

    /// A publish the group commit could not run (a redirect, `NOSCRIPT`, no slot map): the script
    /// and a `WAIT` in one pipeline through the command connection, which follows redirects.
    async fn publish_alone_and_wait(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<String, EngineError> {
        let settings = &self.settings;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.invoke_script(invocation)
            .cmd("WAIT")
            .arg(settings.wait_replicas)
            .arg(settings.wait_timeout.as_millis() as u64);
        let (id, confirmed): (String, u32) = match pipe.query_async(&mut conn).await {
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                invocation
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                pipe.query_async(&mut conn).await.map_err(unavailable)?
            }
            other => other.map_err(unavailable)?,
        };
        if confirmed < settings.wait_replicas {
            return Err(EngineError::Unconfirmed(format!(
                "{confirmed} of {} replicas confirmed message {id} in {:?}",
                settings.wait_replicas, settings.wait_timeout
            )));
        }
        Ok(id)
    }

    /// [`crate::engine::Engine::history`]: a page of the channel's stream.
    pub(super) async fn read_history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<History, EngineError> {
        // Bounds Redis cannot express (and that hold nothing anyway).
        match query {
            HistoryQuery::Before { before, .. } if before <= MessageId::new(0, 0) => {
                return Ok(History::default());
            }
            HistoryQuery::Since { after, .. } if after == MessageId::new(u64::MAX, u64::MAX) => {
                return Ok(History::default());
            }
            _ => {}
        }
        let key = self.keys.history(channel);
        let mut conn = self.conn.clone();
        let (newest_first, gap_after): (Vec<Entry>, Option<MessageId>) = match query {
            HistoryQuery::Last { limit } => (
                conn.xrevrange_count(&key, "+", "-", limit.saturating_add(1))
                    .await
                    .map_err(unavailable)?,
                None,
            ),
            HistoryQuery::Before { before, limit } => (
                conn.xrevrange_count(&key, format!("({before}"), "-", limit.saturating_add(1))
                    .await
                    .map_err(unavailable)?,
                None,
            ),
            HistoryQuery::Since { after, limit } => (
                conn.xrevrange_count(&key, "+", format!("({after}"), limit.saturating_add(1))
                    .await
                    .map_err(unavailable)?,
                Some(after),
            ),
        };
        let limit = match query {
            HistoryQuery::Last { limit }
            | HistoryQuery::Before { limit, .. }
            | HistoryQuery::Since { limit, .. } => limit,
        };
        let truncated = newest_first.len() > limit;
        let mut messages = newest_first
            .into_iter()
            .take(limit)
            .map(|entry| entry_message(channel, entry))
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        let gap = match gap_after {
            None => false,
            Some(after) => {
                let trimmed: Option<String> = conn
                    .get(self.keys.trimmed(channel))
                    .await
                    .map_err(unavailable)?;
                let trimmed = trimmed.and_then(|id| id.parse::<MessageId>().ok());
                truncated || trimmed.is_some_and(|t| t > after)
            }
        };
        Ok(History {
            messages,
            more: truncated && gap_after.is_none(),
            gap,
        })
    }

    /// The id of the newest message kept in `channel` (`0-0` when none is).
    pub(super) async fn tail(&self, channel: &str) -> Result<MessageId, EngineError> {
        let tail: Vec<Entry> = self
            .conn
            .clone()
            .xrevrange_count(self.keys.history(channel), "+", "-", 1)
            .await
            .map_err(unavailable)?;
        match tail.into_iter().next() {
            Some((id, _)) => parse_id(&id),
            None => Ok(MessageId::new(0, 0)),
        }
    }
}
