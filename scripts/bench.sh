#!/usr/bin/env bash
# Runs one chat-bench scenario against release builds of chat-server, started here, the way
# every number in docs/BENCHMARKS.md was produced.
#
#   scripts/bench.sh ENGINE SCENARIO [chat-bench arguments...]
#
# ENGINE:   sqlite  one node, in-process engine with the embedded database (the default engine),
#                   its file in the run's work dir
#           memory  one node, in-process engine keeping nothing across restarts
#           redis   one node on the Redis engine (REDIS_URL, default redis://127.0.0.1:6379)
#           redis2  two nodes on the Redis engine; clients alternate between them
#           cluster   one node on a Redis Cluster (3 masters + 3 replicas) started here with
#                     scripts/redis-cluster.sh on ports CLUSTER_BASE_PORT..+5 (default 7300) and
#                     stopped on exit
#           cluster2  two nodes on that cluster; clients alternate between them
# SCENARIO: seed | fanout | ramp | idle | reconnect-storm | login (see `chat-bench --help`)
#
# Servers listen on 127.0.0.1:8090 (and 8091), with a fresh key, guest file and Redis prefix per
# run; fanout and ramp raise the per-connection rate limits (they measure the server, not its
# flood protection). --server-pid is passed for every node and for Redis (its share of the
# work is part of the cost): on the cluster engines, all six redis-servers (their pidfiles).
# The JSON result goes to bench-results/ENGINE-SCENARIO-TIME.json.
#
# CHAT_SERVER_FLAGS adds flags to every node, split on spaces, e.g.
#   CHAT_SERVER_FLAGS="--redis-wait-replicas 1" scripts/bench.sh cluster2 seed
# (the result file is then named ENGINE-FLAGS-SCENARIO-TIME.json).
#
# Every client comes from 127.0.0.1 (login: every worker), so the per-address limits are raised
# for every scenario, the login limit included (--logins-per-minute/--login-burst 1,000,000:
# far above what one machine reaches); `login` measures signing, not the 429s.
#
# Binaries come from $CARGO_TARGET_DIR (default target/)/release; CHAT_SERVER_BIN runs another
# chat-server build instead (e.g. one built from an older commit, for before/after figures).
set -euo pipefail

engine=${1:?usage: scripts/bench.sh sqlite|memory|redis|redis2|cluster|cluster2 SCENARIO [args...]}
scenario=${2:?usage: scripts/bench.sh ENGINE seed|fanout|ramp|idle|reconnect-storm|login [args...]}
case $scenario in
    seed | fanout | ramp | idle | reconnect-storm | login) ;;
    *) echo "unknown scenario $scenario (seed, fanout, ramp, idle, reconnect-storm, login)" >&2; exit 2 ;;
esac
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
cluster_base=${CLUSTER_BASE_PORT:-7300}
case $engine in
    sqlite | memory | redis | redis2 | cluster | cluster2) ;;
    *) echo "unknown engine $engine (sqlite, memory, redis, redis2, cluster, cluster2)" >&2; exit 2 ;;
esac
extra_flags=()
read -r -a extra_flags <<<"${CHAT_SERVER_FLAGS:-}"

cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p server -p chat-bench
bin=${CARGO_TARGET_DIR:-$root/target}/release
server_bin=${CHAT_SERVER_BIN:-$bin/chat-server}
work=$(mktemp -d)
pids=()
cluster_started=
# The cluster script keeps its pidfiles and data here, so they go with the work dir.
export REDIS_CLUSTER_DIR=$work/redis-cluster
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n $cluster_started ]]; then
        "$root/scripts/redis-cluster.sh" stop "$cluster_base" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
# Every connection is a file descriptor, on both sides.
ulimit -n "$(ulimit -Hn)"

# One issuer for the whole cluster (as behind a load balancer): tokens from either node are
# valid on both.
# Every generated client comes from 127.0.0.x: the per-address limits are off.
flags=(--key-file "$work/key.pem" --guest-file "$work/guests.jsonl" --shutdown-grace 1s
    --public-url http://127.0.0.1:8090 --max-connections-per-ip 0 --max-connections-per-user 0
    --logins-per-minute 1000000 --login-burst 1000000)
# The TCP cap at accept goes by environment, which older builds (CHAT_SERVER_BIN) ignore.
export CHAT_MAX_TCP_CONNECTIONS_PER_IP=0
case $scenario in
    fanout | ramp)
        flags+=(--messages-per-second 100000 --message-burst 100000
            --frames-per-second 100000 --frame-burst 100000) ;;
esac
case $engine in
    sqlite) nodes=1; flags+=(--engine sqlite --database "$work/chat.db") ;;
    memory) nodes=1; flags+=(--engine memory) ;;
    redis) nodes=1; flags+=(--redis-url "$redis_url" --redis-prefix "bench-$$-$RANDOM") ;;
    redis2) nodes=2; flags+=(--redis-url "$redis_url" --redis-prefix "bench-$$-$RANDOM") ;;
    cluster | cluster2)
        nodes=1
        [[ $engine == cluster2 ]] && nodes=2
        # Never stop a cluster this script did not start: refuse ports already in use (the
        # cluster bus listens on port + 10000).
        for ((port = cluster_base; port < cluster_base + 6; port++)); do
            for p in "$port" $((port + 10000)); do
                if (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
                    echo "port $p is in use: pick another CLUSTER_BASE_PORT" >&2
                    exit 1
                fi
            done
        done
        cluster_started=1
        seeds=$("$root/scripts/redis-cluster.sh" start "$cluster_base")
        flags+=(--redis-cluster "$seeds" --redis-prefix "bench-$$-$RANDOM") ;;
esac
flags+=("${extra_flags[@]}")

urls=()
server_pids=()
for ((i = 0; i < nodes; i++)); do
    port=$((8090 + i))
    "$server_bin" --listen "127.0.0.1:$port" "${flags[@]}" >"$work/node$i.log" 2>&1 &
    pids+=($!)
    server_pids+=($!)
    urls+=("ws://127.0.0.1:$port/")
    # The first node writes the key file the second one reads: wait until it answers.
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null || {
        cat "$work/node$i.log" >&2
        exit 1
    }
done
if [[ $engine == redis* ]]; then
    redis_port=${redis_url##*:}
    redis_port=${redis_port%%/*}
    redis_pid=$(pgrep -f "redis-server.*:$redis_port" | head -1 || true)
    [[ -n $redis_pid ]] && server_pids+=("$redis_pid")
fi
if [[ $engine == cluster* ]]; then
    for ((port = cluster_base; port < cluster_base + 6; port++)); do
        redis_pid=$(cat "$REDIS_CLUSTER_DIR/$port/redis.pid" 2>/dev/null ||
            redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
        [[ -n $redis_pid ]] || { echo "no pid for the redis-server on $port" >&2; exit 1; }
        server_pids+=("$redis_pid")
    done
fi

mkdir -p "$root/bench-results"
tag=$engine
if [[ -n ${CHAT_SERVER_FLAGS:-} ]]; then
    tag+=-$(tr -cs 'A-Za-z0-9.' '-' <<<"$CHAT_SERVER_FLAGS" | sed 's/^-*//; s/-*$//')
    echo "+ chat-server flags added: $CHAT_SERVER_FLAGS" >&2
fi
out=$root/bench-results/$tag-$scenario-$(date -u +%Y%m%dT%H%M%S).json
args="$*"
IFS=,
echo "+ chat-bench $scenario --ws-url ${urls[*]} --server-pid ${server_pids[*]} $args" >&2
"$bin/chat-bench" "$scenario" --ws-url "${urls[*]}" --server-pid "${server_pids[*]}" \
    --json "$out" "$@"
unset IFS
echo "result: $out" >&2
