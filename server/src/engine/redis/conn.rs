//! Where the engine's commands go: one Redis (a reconnecting multiplexed connection) or a Redis
//! Cluster (a connection per master that follows MOVED/ASK redirects and failovers). Both speak
//! `ConnectionLike`, so every command, script and pipeline is written once.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// Longest wait for a connection or a reply before a command counts as failed.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a deployment's Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis (`redis://host:port/db`), with classic pub/sub.
    Single(String),
    /// A Redis Cluster named by some of its nodes (`redis://host:port` each), with sharded
    /// pub/sub.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// True for a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The URLs, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Single(url) => url.clone(),
            Self::Cluster(seeds) => format!("cluster {}", seeds.join(",")),
        }
    }
}

/// A command connection of either kind (cheap to clone: clones share the connections).
#[derive(Clone)]
pub(super) enum Conn {
    /// One Redis.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects to `target` and checks that it answers.
    pub(super) async fn connect(target: &RedisTarget) -> RedisResult<Self> {
        match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(COMMAND_TIMEOUT))
                    .set_response_timeout(Some(COMMAND_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(COMMAND_TIMEOUT);
                Ok(Self::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            RedisTarget::Cluster(seeds) => {
                let client = cluster_builder(seeds).build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl Conn {
    /// True when Redis answers PING; on a cluster, when every master does (a channel whose
    /// master is down cannot be served).
    pub(super) async fn ping(&self) -> bool {
        let ping = redis::cmd("PING");
        let answer: RedisResult<Value> = match self.clone() {
            Self::Single(mut conn) => ping.query_async(&mut conn).await,
            Self::Cluster(mut conn) => {
                conn.route_command(
                    ping,
                    RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::AllSucceeded),
                    )),
                )
                .await
            }
        };
        answer.is_ok()
    }
}

/// A cluster client with this engine's timeouts (commands and subscriptions alike).
pub(super) fn cluster_builder(seeds: &[String]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(COMMAND_TIMEOUT)
        .response_timeout(COMMAND_TIMEOUT)
        // Redirects during a resharding and the few seconds of a failover are retried; past
        // that, the caller answers `unavailable`.
        .retries(4)
        .min_retry_wait(50)
        .max_retry_wait(500)
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
