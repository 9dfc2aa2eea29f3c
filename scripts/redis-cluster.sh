#!/usr/bin/env bash
# A local Redis Cluster for development and benchmarks: 3 masters + 3 replicas of redis-server
# on loopback ports BASE..BASE+5 (default 7000..7005), data under DIR (default a fresh temp dir,
# nothing saved anywhere shared).
#
#   scripts/redis-cluster.sh start [BASE]   # prints the --redis-cluster seeds to use
#   scripts/redis-cluster.sh stop [BASE]
#
# Tests start their own clusters (server/tests/common/redis_cluster.rs); this script is for
# people and for scripts/bench.sh.
set -euo pipefail

command=${1:-}
base=${2:-7000}
ports=$(seq "$base" $((base + 5)))
state_dir=${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/bevy-chat-redis-cluster-$base}

answers() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }

case "$command" in
start)
  command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
  command -v redis-cli >/dev/null || { echo "redis-cli is not installed" >&2; exit 1; }
  rm -rf "$state_dir"
  mkdir -p "$state_dir"
  for port in $ports; do
    if answers "$port"; then
      echo "port $port is already taken by a Redis; stop it first ($0 stop $base)" >&2
      exit 1
    fi
    mkdir -p "$state_dir/$port"
    # AOF off and no snapshots: this cluster is for tests and benchmarks (see docs/DEPLOY.md for
    # production settings). A short node timeout makes failovers quick.
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$state_dir/$port/nodes.conf" \
      --cluster-node-timeout "${REDIS_CLUSTER_NODE_TIMEOUT:-2000}" \
      --save "" --appendonly no --dir "$state_dir/$port" \
      --logfile "$state_dir/$port/redis.log" --pidfile "$state_dir/$port/redis.pid"
  done
  for port in $ports; do
    for _ in $(seq 100); do answers "$port" && break; sleep 0.1; done
    answers "$port" || { echo "redis-server on $port does not answer" >&2; exit 1; }
  done
  nodes=()
  for port in $ports; do nodes+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$state_dir/create.log"
  for _ in $(seq 200); do
    if redis-cli -p "$base" cluster info | grep -q 'cluster_state:ok'; then break; fi
    sleep 0.1
  done
  redis-cli -p "$base" cluster info | grep -q 'cluster_state:ok' || {
    echo "the cluster did not become ready; see $state_dir" >&2
    exit 1
  }
  # cluster_state:ok comes before the replicas have their data: the first sync waits for
  # repl-diskless-sync-delay (5 s). Until it is done WAIT confirms nothing and the sync's fork
  # lands in whatever runs next, so wait for every replica's link.
  for port in $ports; do
    redis-cli -p "$port" info replication | grep -q '^role:slave' || continue
    for _ in $(seq 300); do
      redis-cli -p "$port" info replication | grep -q '^master_link_status:up' && break
      sleep 0.1
    done
    redis-cli -p "$port" info replication | grep -q '^master_link_status:up' || {
      echo "the replica on $port did not sync with its master; see $state_dir" >&2
      exit 1
    }
  done
  seeds=()
  for port in $(seq "$base" $((base + 2))); do seeds+=("redis://127.0.0.1:$port"); done
  (IFS=,; echo "${seeds[*]}")
  ;;
stop)
  for port in $ports; do
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$state_dir"
  ;;
*)
  echo "usage: $0 start|stop [BASE_PORT]" >&2
  exit 2
  ;;
esac
