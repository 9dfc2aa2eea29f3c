#!/usr/bin/env bash
# Soak test: two chat-server nodes on a private Redis, driven by chat-bench through reconnect
# storms and a Redis restart (SIGKILL mid-traffic), then checked:
#   - no accepted message was lost in any cycle (chat-bench's exact accounting);
#   - the only errors are the ones injected: `server:unavailable` while Redis is down, none
#     otherwise, and every refused message is one of them;
#   - the nodes' memory returned to its baseline (RSS after the last cycle within 25 % + 8 MiB
#     of the RSS after the warm-up, one run of each traffic shape) and no connection is left
#     open.
#
#   scripts/soak.sh [--cycles N] [--clients N]      (defaults: 3 storm cycles, 600 clients)
#
# Bounded: about 40 s per cycle plus ~90 s. Uses ports 8190/8191 and a free port for Redis;
# writes JSON results and logs to bench-results/soak-TIME/. Needs redis-server, curl, python3.
set -euo pipefail

cycles=3
clients=600
while [[ $# -gt 0 ]]; do
    case $1 in
        --cycles) cycles=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        *) echo "usage: scripts/soak.sh [--cycles N] [--clients N]" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p server -p chat-bench
bin=$root/target/release
out=$root/bench-results/soak-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$out"
work=$(mktemp -d)
pids=()
redis_pid=
cleanup() {
    for pid in "${pids[@]}" $redis_pid; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_redis() {
    # AOF with fsync on every write: what was acknowledged survives the SIGKILL.
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --appendonly yes \
        --appendfsync always --save "" >"$out/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis-server did not start" >&2
    exit 1
}
start_redis

flags=(--redis-url "redis://127.0.0.1:$redis_port" --redis-prefix soak: --key-file "$work/key.pem"
    --public-url http://127.0.0.1:8190 --shutdown-grace 1s --max-connections-per-ip 0 --max-tcp-connections-per-ip 0
    --max-connections-per-user 0 --logins-per-minute 1000000 --login-burst 1000000)
node_pids=()
for port in 8190 8191; do
    "$bin/chat-server" --listen "127.0.0.1:$port" "${flags[@]}" >"$out/node-$port.log" 2>&1 &
    pids+=($!)
    node_pids+=($!)
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
done
urls=ws://127.0.0.1:8190/,ws://127.0.0.1:8191/
server_pids=$(IFS=,; echo "${node_pids[*]}")

rss_kib() {
    local total=0
    for pid in "${node_pids[@]}"; do
        total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status")))
    done
    echo "$total"
}

bench() { # name scenario [args...]
    local name=$1; shift
    "$bin/chat-bench" "$@" --ws-url "$urls" --server-pid "$server_pids" --no-progress \
        -n "$clients" --channels 60 --json "$out/$name.json" >"$out/$name.txt" 2>&1 || true
}

# check.py FILE ALLOWED_ERROR_KIND...: no loss, refusals == allowed errors, no other errors.
check() {
    python3 - "$@" <<'PY'
import json, sys
path, allowed = sys.argv[1], set(sys.argv[2:])
r = json.load(open(path))
d, errors = r["deliveries"], r["errors"]
problems = []
if d["lost"] or d["duplicated"] or d["unexpected"]:
    problems.append(f"lost {d['lost']}, duplicated {d['duplicated']}, unexpected {d['unexpected']}")
if d["messages_acked"] + d["messages_rejected"] != d["messages_sent"]:
    problems.append(f"sent {d['messages_sent']} != acked {d['messages_acked']} + refused {d['messages_rejected']}")
other = {k: v for k, v in errors.items() if k not in allowed}
if other:
    problems.append(f"errors not injected: {other}")
injected = sum(v for k, v in errors.items() if k in allowed)
if injected != d["messages_rejected"]:
    problems.append(f"{injected} injected errors but {d['messages_rejected']} refused messages")
storm = r.get("storm") or {}
print(f"{path.rsplit('/', 1)[-1]}: sent {d['messages_sent']}, refused {d['messages_rejected']}, "
      f"delivered {d['received']}/{d['expected']}, p99 {r['latency_us']['p99'] / 1000:.1f} ms, "
      f"errors {errors or 'none'}"
      + (f", storm {storm['reconnected']}/{storm['dropped']} back in {storm['storm_secs']:.2f} s" if storm else ""))
for p in problems:
    print("  FAIL:", p)
sys.exit(1 if problems else 0)
PY
}

failed=0
# Warm-up: one run of each traffic shape, so the allocator has reached the size the peaks need
# (a storm briefly holds the old and the new connections); the baseline is taken after it.
echo "== warm-up (seed, then a reconnect storm, $clients clients)"
echo "   RSS of both nodes at start: $(($(rss_kib) / 1024)) MiB"
bench warmup seed --duration 15
check "$out/warmup.json" || failed=1
echo "   RSS of both nodes now: $(($(rss_kib) / 1024)) MiB"
bench warmup-storm reconnect-storm --duration 15
check "$out/warmup-storm.json" || failed=1
sleep 2
baseline=$(rss_kib)
echo "baseline RSS of both nodes: $((baseline / 1024)) MiB"

for ((c = 1; c <= cycles; c++)); do
    echo "== cycle $c: reconnect storm"
    bench "storm-$c" reconnect-storm --duration 15
    check "$out/storm-$c.json" || failed=1
    echo "   RSS of both nodes now: $(($(rss_kib) / 1024)) MiB"
done

echo "== Redis restart: SIGKILL 8 s into 25 s of traffic, back 3 s later"
bench redis-restart seed --duration 25 --drain 15 &
bench_pid=$!
sleep 10
kill -9 "$redis_pid"
wait "$redis_pid" 2>/dev/null || true
sleep 3
start_redis
wait "$bench_pid"
check "$out/redis-restart.json" server:unavailable || failed=1
python3 - "$out/redis-restart.json" <<'PY' || failed=1
import json, sys
r = json.load(open(sys.argv[1]))
if not r["errors"].get("server:unavailable"):
    print("  FAIL: the Redis restart injected no `unavailable` errors (did it happen during traffic?)")
    sys.exit(1)
PY

echo "== after"
sleep 3
final=$(rss_kib)
open=0
for port in 8190 8191; do
    n=$(curl -fs "http://127.0.0.1:$port/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])')
    open=$((open + n))
done
limit=$((baseline * 125 / 100 + 8192))
echo "RSS: baseline $((baseline / 1024)) MiB, final $((final / 1024)) MiB (limit $((limit / 1024)) MiB); connections still open: $open"
if ((final > limit)); then echo "  FAIL: memory did not return to its baseline"; failed=1; fi
if ((open != 0)); then echo "  FAIL: connections left open"; failed=1; fi
echo "results: $out"
if ((failed)); then echo "SOAK FAILED"; exit 1; fi
echo "SOAK PASSED"
