//! A private Redis Cluster for tests: 3 masters and 3 replicas of `redis-server` on free
//! loopback ports, created with `redis-cli --cluster create`, its files in a temporary
//! directory, every process killed when dropped (and by a watchdog should the test process die
//! first). Tests that kill a master or move a slot start their own; the rest share one per test
//! process ([`cluster_seeds`]).

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::engines::{RedisProcess, on_ci, redis_ping};

/// Node timeout of test clusters: a dead master's replica takes over within a few seconds.
const NODE_TIMEOUT_MS: u64 = 1000;

/// A running cluster.
pub struct RedisCluster {
    /// Every node, masters first as created (a failover changes roles, not this order).
    pub nodes: Vec<RedisProcess>,
    dir: tempfile::TempDir,
}

/// A master and the slots it serves.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Its port.
    pub port: u16,
    /// Its slot ranges, inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts 6 nodes and creates the cluster; returns once every slot is served and every
    /// replica is in sync. Blocking.
    pub fn start() -> Result<Self, String> {
        which("redis-server")?;
        which("redis-cli")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = cluster_port();
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
            let timeout = NODE_TIMEOUT_MS.to_string();
            let config = node_dir.join("nodes.conf");
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                &timeout,
                "--cluster-config-file",
                config.to_str().unwrap(),
                "--dir",
                node_dir.to_str().unwrap(),
            ];
            nodes.push(RedisProcess::start_with(port, &args)?);
        }
        let cluster = Self { nodes, dir };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&created.stdout)
            ));
        }
        cluster.wait_until_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// `redis://127.0.0.1:port` of every node (what `--redis-cluster` is given).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisProcess::url).collect()
    }

    /// A node that is running, to ask about the cluster.
    fn any_live(&self) -> Result<&RedisProcess, String> {
        self.nodes
            .iter()
            .find(|node| node.is_running() && redis_ping(&node.url()).is_ok())
            .ok_or_else(|| "no cluster node answers".to_owned())
    }

    /// Runs `command` against the node on `port` (blocking).
    pub fn query<T: ::redis::FromRedisValue>(
        &self,
        port: u16,
        command: &::redis::Cmd,
    ) -> Result<T, String> {
        let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .map_err(|e| e.to_string())?;
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        command.query(&mut connection).map_err(|e| e.to_string())
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        let node = self.any_live().unwrap();
        self.query(node.port, ::redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .unwrap()
    }

    /// The masters and their slots, as a live node sees them now (`CLUSTER NODES`).
    pub fn shards(&self) -> Vec<Shard> {
        let node = self.any_live().unwrap();
        let table: String = self
            .query(node.port, ::redis::cmd("CLUSTER").arg("NODES"))
            .unwrap();
        let mut shards = Vec::new();
        for line in table.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap();
            let slots = fields[8..]
                .iter()
                .filter(|range| !range.starts_with('['))
                .map(|range| match range.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (range.parse().unwrap(), range.parse().unwrap()),
                })
                .collect();
            shards.push(Shard { port, slots });
        }
        shards.retain(|shard| !shard.slots.is_empty());
        shards.sort_by_key(|shard| shard.port);
        shards
    }

    /// The port of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> u16 {
        self.shards()
            .into_iter()
            .find(|shard| shard.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|shard| shard.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The port of a replica of the master on `port` (`CLUSTER REPLICAS`).
    pub fn replica_of(&self, master: u16) -> u16 {
        let id = self.node_id(master);
        let replicas: Vec<String> = self
            .query(master, ::redis::cmd("CLUSTER").arg("REPLICAS").arg(&id))
            .unwrap();
        let line = replicas
            .first()
            .unwrap_or_else(|| panic!("{master} has no replica"));
        line.split_whitespace()
            .nth(1)
            .and_then(|address| address.split(['@', ':']).nth(1))
            .and_then(|port| port.parse().ok())
            .unwrap()
    }

    /// The node id of the node on `port` (`CLUSTER MYID`).
    pub fn node_id(&self, port: u16) -> String {
        self.query(port, ::redis::cmd("CLUSTER").arg("MYID"))
            .unwrap()
    }

    /// Kills the node on `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        node.kill();
    }

    /// Starts the node on `port` again after [`RedisCluster::kill`], with its cluster file: it
    /// rejoins, as a replica when its slots were failed over.
    pub fn restart(&mut self, port: u16) -> Result<(), String> {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        node.restart()
    }

    /// Kills the master serving `slot`, waits until its replica took over, and starts the old
    /// master again (it rejoins as the new master's replica), as an operator's orchestrator
    /// would. Returns the new master's port.
    pub fn fail_over_by_kill(&mut self, slot: u16) -> Result<u16, String> {
        let old = self.master_of(slot);
        self.kill(old);
        let deadline = Instant::now() + Duration::from_secs(30);
        let new = loop {
            if let Some(new) = self
                .shards()
                .iter()
                .find(|shard| shard.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
                .map(|shard| shard.port)
                .filter(|port| *port != old)
            {
                break new;
            }
            if Instant::now() > deadline {
                return Err(format!("no replica took over slot {slot} from {old}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.restart(old)?;
        self.wait_until_healthy(Duration::from_secs(30))?;
        Ok(new)
    }

    /// Waits until every slot is served by a live master and every live replica is in sync
    /// (after a create or a failover).
    pub fn wait_until_healthy(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.health() {
                Ok(()) => return Ok(()),
                Err(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("the cluster did not become healthy: {last}"))
    }

    fn health(&self) -> Result<(), String> {
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            let info: String = self.query(node.port, ::redis::cmd("CLUSTER").arg("INFO"))?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("node {} reports {info}", node.port));
            }
            let replication: String =
                self.query(node.port, ::redis::cmd("INFO").arg("replication"))?;
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return Err(format!("replica {} is not in sync", node.port));
            }
        }
        let covered: u32 = self
            .shards()
            .iter()
            .flat_map(|shard| shard.slots.iter())
            .map(|(a, b)| u32::from(b - a) + 1)
            .sum();
        if covered != 16384 {
            return Err(format!("{covered} of 16384 slots are served"));
        }
        Ok(())
    }

    /// Moves `slot` and its keys to the master on `to`, as `redis-cli --cluster reshard` does
    /// for each slot it moves: IMPORTING on the target, MIGRATING on the source, MIGRATE of
    /// every key, then the slot's new owner told to both and the other masters.
    pub fn migrate_slot(&self, slot: u16, to: u16) -> Result<(), String> {
        let from = self.master_of(slot);
        if from == to {
            return Ok(());
        }
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let setslot = |port: u16, state: &str, id: &str| -> Result<(), String> {
            self.query::<()>(
                port,
                ::redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg(state)
                    .arg(id),
            )
        };
        setslot(to, "IMPORTING", &from_id)?;
        setslot(from, "MIGRATING", &to_id)?;
        loop {
            let keys: Vec<String> = self.query(
                from,
                ::redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(100),
            )?;
            if keys.is_empty() {
                break;
            }
            self.query::<()>(
                from,
                ::redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to)
                    .arg("")
                    .arg(0)
                    .arg(5000)
                    .arg("KEYS")
                    .arg(&keys),
            )?;
        }
        setslot(to, "NODE", &to_id)?;
        setslot(from, "NODE", &to_id)?;
        for shard in self.shards() {
            if shard.port != from && shard.port != to {
                setslot(shard.port, "NODE", &to_id)?;
            }
        }
        Ok(())
    }

    /// Temporary directory of the nodes' files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

fn which(program: &str) -> Result<(), String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        Ok(())
    } else {
        Err(format!(
            "{program} is not installed (Debian: apt-get install redis-server)"
        ))
    }
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = super::engines::unused_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A private cluster for a test that kills a node or moves slots. `None`, after saying why,
/// when none can be started; under `CI=true` that fails the test instead.
pub async fn private_cluster(name: &str) -> Option<RedisCluster> {
    let mut why = String::new();
    for _ in 0..2 {
        match tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .unwrap()
        {
            Ok(cluster) => return Some(cluster),
            Err(error) => why = error,
        }
    }
    assert!(
        !on_ci(),
        "{name}: CI=true and this test needs a Redis Cluster: {why}"
    );
    eprintln!("skipping {name}: no Redis Cluster could be started: {why}");
    None
}

static SHARED: OnceLock<Result<Vec<String>, String>> = OnceLock::new();

/// Seeds of the cluster the cluster variants of a test process share, started on first use
/// (its nodes are stopped by their watchdogs when the process exits). Blocks while starting.
pub fn cluster_seeds() -> Result<Vec<String>, String> {
    SHARED
        .get_or_init(|| {
            let cluster = RedisCluster::start()?;
            let seeds = cluster.seeds();
            // Serves the whole test process: never dropped; the watchdogs stop the nodes.
            let dir = cluster.dir.path().to_owned();
            std::mem::forget(cluster);
            eprintln!("shared Redis Cluster started ({})", dir.display());
            Ok(seeds)
        })
        .clone()
}

/// A connection to the Redis of the running test: the single Redis, or the shared cluster
/// (following redirects), for tests that write or read the engine's keys themselves.
#[derive(Clone)]
pub enum EngineConnection {
    /// One Redis.
    Single(::redis::aio::MultiplexedConnection),
    /// The cluster.
    Cluster(::redis::cluster_async::ClusterConnection),
}

impl EngineConnection {
    /// Connects to the Redis of [`super::TestEngine::current`] (panics on the memory engine).
    pub async fn current() -> Self {
        match super::TestEngine::current() {
            super::TestEngine::Redis { .. } => {
                Self::Single(super::redis_connection(&super::redis_url().unwrap()).await)
            }
            super::TestEngine::RedisCluster { .. } => {
                let seeds = cluster_seeds().unwrap();
                let client = ::redis::cluster::ClusterClient::new(seeds).unwrap();
                Self::Cluster(client.get_async_connection().await.unwrap())
            }
            super::TestEngine::Memory | super::TestEngine::Sqlite => {
                panic!("the in-process engine has no Redis")
            }
        }
    }
}

impl ::redis::aio::ConnectionLike for EngineConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a ::redis::Cmd,
    ) -> ::redis::RedisFuture<'a, ::redis::Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> ::redis::RedisFuture<'a, Vec<::redis::Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}
