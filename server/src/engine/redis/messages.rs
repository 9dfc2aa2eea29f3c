//! Chat messages in Redis: publishing (append to the channel's stream and publish, in one
//! script, optionally waiting for replicas) and reading history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{ChatMessage, MessageId};
use redis::AsyncCommands;

use super::batches::NotRun;
use super::entries::{Entry, entry_message, parse_id};
use super::wire::Wire;
use super::{Shared, scripts, unavailable};
use crate::engine::{EngineError, History, HistoryQuery, NewMessage};

/// How often a node has a channel's stream trimmed and its expiry renewed (with a publish).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// The publish script's keys and arguments (the message's own fields borrowed, not copied).
struct PublishCall<'a> {
    keys: [String; 3],
    max_len: String,
    maintain: &'static str,
    age: String,
    new: &'a NewMessage,
    head: String,
    publish: &'static str,
    expiry: String,
}

impl PublishCall<'_> {
    /// The script's invocation (loads the script into Redis when it is missing).
    fn invocation(&self) -> redis::ScriptInvocation<'static> {
        let mut invocation = scripts::PUBLISH.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        for arg in self.args() {
            invocation.arg(arg);
        }
        invocation
    }

    /// The script's `EVALSHA`, for a batch.
    fn command(&self) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(scripts::PUBLISH.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys[..])
            .arg(&self.args()[..]);
        command
    }

    /// `ARGV`, in the script's order.
    fn args(&self) -> [&str; 9] {
        [
            &self.max_len,
            self.maintain,
            &self.age,
            &self.new.user_id,
            &self.new.username,
            &self.new.message,
            &self.head,
            self.publish,
            &self.expiry,
        ]
    }
}

impl Shared {
    /// [`crate::engine::Broker::publish`]: appends and publishes in one script; with
    /// `wait_replicas`, acknowledges only once that many replicas confirmed it.
    pub(super) async fn publish_message(
        &self,
        new: NewMessage,
    ) -> Result<Arc<ChatMessage>, EngineError> {
        let call = self.publish_call(&new);
        let id: String = match &self.batches {
            None => self.publish_alone(&call).await?,
            Some(batches) => match batches.publish(call.command(), &call.keys[0]).await {
                Ok(outcome) => outcome?,
                // Not run (a redirect, `NOSCRIPT`): alone, through the command connection.
                Err(NotRun) if self.settings.wait_replicas > 0 => {
                    self.publish_alone_and_wait(&call).await?
                }
                Err(NotRun) => self.publish_alone(&call).await?,
            },
        };
        let id = parse_id(&id)?;
        Ok(Arc::new(new.stored(id)))
    }

    /// The publish script's keys and arguments for `new`.
    fn publish_call<'a>(&self, new: &'a NewMessage) -> PublishCall<'a> {
        let settings = &self.settings;
        let age = settings.history_max_age.as_millis() as u64;
        PublishCall {
            keys: [
                self.keys.history(&new.channel),
                self.keys.channel(&new.channel),
                self.keys.trimmed(&new.channel),
            ],
            max_len: settings.history_size.max(1).to_string(),
            maintain: if self.due_for_maintenance(&new.channel) {
                "1"
            } else {
                "0"
            },
            age: age.to_string(),
            new,
            head: Wire::message_head(&new.channel, &new.user_id, &new.username, &new.message),
            publish: self.publish_command(),
            expiry: (age + 2 * MAINTENANCE_INTERVAL.as_millis() as u64).to_string(),
        }
    }

    /// Whether this publish should also trim the channel's stream and renew its expiry: at most
    /// once per [`MAINTENANCE_INTERVAL`] per channel from this node.
    fn due_for_maintenance(&self, channel: &str) -> bool {
        let now = Instant::now();
        let mut maintained = self.maintained.lock();
        match maintained.get_mut(channel) {
            Some(at) if now.duration_since(*at) < MAINTENANCE_INTERVAL => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                maintained.insert(channel.to_owned(), now);
                true
            }
        }
    }

    /// Forgets channels not published to for a while (bounds the maintenance record).
    pub(super) fn forget_quiet_channels(&self) {
        let now = Instant::now();
        self.maintained
            .lock()
            .retain(|_, at| now.duration_since(*at) < MAINTENANCE_INTERVAL * 10);
    }

    /// A publish alone, through the command connection.
    async fn publish_alone(&self, call: &PublishCall<'_>) -> Result<String, EngineError> {
        call.invocation()
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    /// A publish the batch could not run (a redirect, `NOSCRIPT`, no slot map): the script
    /// and a `WAIT` in one pipeline through the command connection, which follows redirects.
    async fn publish_alone_and_wait(&self, call: &PublishCall<'_>) -> Result<String, EngineError> {
        let invocation = call.invocation();
        let settings = &self.settings;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation)
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

    /// [`crate::engine::Broker::history`]: a page of the channel's stream.
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
        // Publishes trim at most once a second: trim now, so the read is exact.
        let _: i64 = scripts::TRIM
            .key(&key)
            .key(self.keys.trimmed(channel))
            .arg(self.settings.history_size.max(1))
            .arg(self.settings.history_max_age.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
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
