//! Publishing in batches: a node's publish scripts go to their master in batches, each batch one
//! pipeline (one write, one reply, one wake-up of Redis), followed, with `--redis-wait-replicas`,
//! by a single `WAIT` (a group commit).
//!
//! Each master has a worker with a connection of its own and at most one batch in flight: what
//! arrives meanwhile waits in the worker's queue and goes out, whole, in the next batch. With
//! `--redis-publish-linger`, a message is held up to that long from when it was queued, so that
//! the messages of other players join its batch: at chat rates, where publishes rarely overlap,
//! that is what halves the cost per message (docs/BENCHMARKS.md), for the linger on latency.
//!
//! Redis reads nothing more from a client blocked in `WAIT`, so a `WAIT` per message on a shared
//! connection would queue every later command behind it: a replica that stalls for a second
//! would hold every message of its master's channels for seconds. Here the scripts of a batch
//! run (and publish) at once, so deliveries are not held up; only the acknowledgements wait, at
//! most one timeout. A script refused with a redirect (a slot moving) or `NOSCRIPT` did not run
//! ([`NotRun`]): the caller sends it again on its own through the command connection, which
//! follows redirects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisResult, ServerErrorKind, Value,
};
use tokio::sync::{mpsc, oneshot};

use super::conn::COMMAND_TIMEOUT;
use super::{Conn, RedisTarget, keys};
use crate::engine::EngineError;

/// How a node's publishes are batched.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchSettings {
    /// How long a worker waits for more publishes before sending a batch.
    pub linger: Duration,
    /// Replicas that must confirm a batch (`WAIT`; 0: none).
    pub replicas: u32,
    /// Longest `WAIT`.
    pub timeout: Duration,
}

/// Publishes waiting per master before new ones are refused.
const QUEUE: usize = 4096;
/// Most scripts in one batch.
const MAX_BATCH: usize = 512;
/// Slot map refreshes at most this often.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// What a publish comes back with: the message id, or why it was not acknowledged.
pub(super) type Outcome = Result<String, EngineError>;

/// A publish the batch did not run (the master is not known, a redirect, `NOSCRIPT`): the
/// caller runs it alone, through the command connection.
#[derive(Debug)]
pub(super) struct NotRun;

/// Where a publish's outcome goes.
type Reply = oneshot::Sender<Result<Outcome, NotRun>>;

/// One publish: its `EVALSHA`, when it was queued, and where the outcome goes.
struct Pending {
    command: Cmd,
    queued: Instant,
    reply: Reply,
}

/// A master: `host:port` (what logs and errors name; never the credentials) and how to connect
/// to it (the deployment's scheme, user, password and TLS settings with that address).
#[derive(Clone)]
struct Master {
    name: String,
    info: ConnectionInfo,
}

/// The workers of one engine.
pub(super) struct Batches {
    target: RedisTarget,
    conn: Conn,
    settings: BatchSettings,
    /// The URL (one Redis) or first seed (a cluster): what every master's connection is like.
    template: ConnectionInfo,
    /// Master `host:port` → its worker's queue.
    workers: Mutex<HashMap<String, mpsc::Sender<Pending>>>,
    /// A cluster's slot ranges and their masters (`host:port`).
    slots: Mutex<SlotMap>,
}

#[derive(Default)]
struct SlotMap {
    ranges: Vec<(u16, u16, String, u16)>,
    refreshed: Option<Instant>,
}

impl Batches {
    /// Workers for `target` (`conn`: the engine's command connection, for the slot map).
    pub(super) fn new(
        target: RedisTarget,
        conn: Conn,
        settings: BatchSettings,
    ) -> RedisResult<Self> {
        let template = match &target {
            RedisTarget::Single(url) => url.as_str().into_connection_info()?,
            RedisTarget::Cluster(seeds) => seeds
                .first()
                .map(String::as_str)
                .unwrap_or_default()
                .into_connection_info()?,
        };
        Ok(Self {
            target,
            conn,
            settings,
            template,
            workers: Mutex::default(),
            slots: Mutex::default(),
        })
    }

    /// Publishes through the worker of the master of `key` (a key of the script).
    pub(super) async fn publish(
        self: &Arc<Self>,
        command: Cmd,
        key: &str,
    ) -> Result<Outcome, NotRun> {
        let Some(master) = self.master_of(key).await else {
            return Err(NotRun);
        };
        let queue = self.worker(&master);
        let (reply, outcome) = oneshot::channel();
        let queued = Instant::now();
        match queue.try_send(Pending {
            command,
            queued,
            reply,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Ok(Err(EngineError::Unavailable(format!(
                    "{QUEUE} messages already wait to be published on {}",
                    master.name
                ))));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.workers.lock().remove(&master.name);
                return Err(NotRun);
            }
        }
        outcome.await.unwrap_or_else(|_| {
            Ok(Err(EngineError::Unavailable(
                "the publishing worker stopped".into(),
            )))
        })
    }

    fn worker(self: &Arc<Self>, master: &Master) -> mpsc::Sender<Pending> {
        let mut workers = self.workers.lock();
        if let Some(queue) = workers.get(&master.name).filter(|queue| !queue.is_closed()) {
            return queue.clone();
        }
        let (queue, pending) = mpsc::channel(QUEUE);
        workers.insert(master.name.clone(), queue.clone());
        tokio::spawn(work(self.clone(), master.clone(), pending));
        queue
    }

    /// The master running `key`'s scripts.
    async fn master_of(&self, key: &str) -> Option<Master> {
        if let RedisTarget::Single(_) = &self.target {
            return Some(Master {
                name: self.template.addr().to_string(),
                info: self.template.clone(),
            });
        }
        let slot = keys::slot(key);
        let found = self.slots.lock().find(slot);
        let (host, port) = match found {
            Some(found) => found,
            None => {
                self.refresh().await;
                self.slots.lock().find(slot)?
            }
        };
        Some(master(&self.template, &host, port))
    }

    /// Reads the cluster's slot map again (at most every [`REFRESH_EVERY`]).
    async fn refresh(&self) {
        if !self.target.is_cluster() {
            return;
        }
        {
            let slots = self.slots.lock();
            if slots
                .refreshed
                .is_some_and(|at| at.elapsed() < REFRESH_EVERY)
            {
                return;
            }
        }
        let reply: RedisResult<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.conn.clone())
            .await;
        let mut slots = self.slots.lock();
        slots.refreshed = Some(Instant::now());
        match reply {
            Ok(value) => slots.ranges = parse_slots(value),
            Err(error) => tracing::warn!(%error, "cannot read the cluster's slot map"),
        }
    }
}

impl SlotMap {
    fn find(&self, slot: u16) -> Option<(String, u16)> {
        self.ranges
            .iter()
            .find(|(start, end, _, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, host, port)| (host.clone(), *port))
    }
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]`.
fn parse_slots(value: Value) -> Vec<(u16, u16, String, u16)> {
    let Value::Array(ranges) = value else {
        return Vec::new();
    };
    let mut parsed = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            continue;
        };
        parsed.push((*start as u16, *end as u16, host, *port as u16));
    }
    parsed
}

/// One master's worker: one batch in flight at a time, on a connection of its own.
async fn work(batches: Arc<Batches>, master: Master, mut queue: mpsc::Receiver<Pending>) {
    let settings = batches.settings;
    let mut conn: Option<MultiplexedConnection> = None;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        take_queued(&mut queue, &mut batch);
        // Held at most the linger from when the oldest was queued (it may have waited for the
        // batch in flight already), and not at all once the batch is full.
        let until = batch[0].queued + settings.linger;
        if batch.len() < MAX_BATCH && until > Instant::now() {
            tokio::time::sleep_until(until.into()).await;
            take_queued(&mut queue, &mut batch);
        }
        if conn.is_none() {
            conn = connect(&master).await;
        }
        let Some(connection) = conn.as_mut() else {
            // Not sent. Answered at once: the command connection would find the same master
            // down only after its retries. A failover may have moved the slots: read them again.
            let replies = batch.into_iter().map(|pending| pending.reply);
            fail(replies, &format!("cannot connect to {}", master.name));
            batches.refresh().await;
            continue;
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let replies: Vec<Reply> = batch
            .into_iter()
            .map(|pending| {
                pipe.add_command(pending.command);
                pending.reply
            })
            .collect();
        let waits = settings.replicas > 0;
        if waits {
            pipe.cmd("WAIT")
                .arg(settings.replicas)
                .arg(settings.timeout.as_millis() as u64);
        }
        let sent = tokio::time::timeout(
            COMMAND_TIMEOUT,
            pipe.query_async::<Vec<RedisResult<Value>>>(connection),
        )
        .await;
        let mut results = match sent {
            Ok(Ok(results)) if results.len() == replies.len() + usize::from(waits) => results,
            Ok(Ok(_)) => {
                conn = None;
                fail(replies, "unexpected reply to a batch of publishes");
                continue;
            }
            Ok(Err(error)) => {
                conn = None;
                fail(replies, &error.to_string());
                continue;
            }
            Err(_) => {
                // The scripts may have run: answered `unavailable`, never sent again.
                conn = None;
                fail(replies, "Redis did not answer a batch of publishes in time");
                continue;
            }
        };
        let confirmed = if waits {
            match results.pop() {
                Some(Ok(Value::Int(confirmed))) => confirmed,
                _ => 0,
            }
        } else {
            0
        };
        let mut moved = false;
        for (reply, result) in replies.into_iter().zip(results) {
            let outcome = match result {
                Ok(value) => match redis::from_redis_value::<String>(value) {
                    Ok(id) if confirmed >= i64::from(settings.replicas) => Ok(Ok(id)),
                    Ok(id) => Ok(Err(EngineError::Unconfirmed(format!(
                        "{confirmed} of {} replicas confirmed message {id} in {:?}",
                        settings.replicas, settings.timeout
                    )))),
                    Err(error) => Ok(Err(EngineError::Unavailable(error.to_string()))),
                },
                Err(error) => match error.kind() {
                    // The script did not run: run it alone (following the redirect).
                    redis::ErrorKind::Server(
                        ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::NoScript,
                    ) => {
                        moved |= !matches!(
                            error.kind(),
                            redis::ErrorKind::Server(ServerErrorKind::NoScript)
                        );
                        Err(NotRun)
                    }
                    _ => Ok(Err(EngineError::Unavailable(error.to_string()))),
                },
            };
            let _ = reply.send(outcome);
        }
        if moved {
            batches.refresh().await;
        }
    }
}

/// The master at `host:port`, connected to with `template`'s scheme, credentials and TLS.
fn master(template: &ConnectionInfo, host: &str, port: u16) -> Master {
    let addr = match template.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    Master {
        name: format!("{host}:{port}"),
        info: template.clone().set_addr(addr),
    }
}

/// Moves what is queued now into `batch`, up to [`MAX_BATCH`].
fn take_queued(queue: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(pending) => batch.push(pending),
            Err(_) => break,
        }
    }
}

async fn connect(master: &Master) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(master.info.clone()).ok()?;
    let connecting = client.get_multiplexed_async_connection();
    match tokio::time::timeout(COMMAND_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(error)) => {
            tracing::warn!(%error, master = master.name, "cannot connect to publish");
            None
        }
        Err(_) => {
            tracing::warn!(master = master.name, "cannot connect to publish: timed out");
            None
        }
    }
}

fn fail(replies: impl IntoIterator<Item = Reply>, why: &str) {
    for reply in replies {
        let _ = reply.send(Ok(Err(EngineError::Unavailable(why.to_owned()))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_keeps_the_deployments_credentials_and_names_only_its_address() {
        let template = "redis://chat:s3cret@10.0.0.1:7000/"
            .into_connection_info()
            .unwrap();
        let found = master(&template, "10.0.0.2", 7001);
        assert_eq!(found.name, "10.0.0.2:7001");
        assert_eq!(found.info.addr().to_string(), "10.0.0.2:7001");
        let redis = found.info.redis_settings();
        assert_eq!(redis.username(), Some("chat"));
        assert_eq!(redis.password(), Some("s3cret"));
    }
}
