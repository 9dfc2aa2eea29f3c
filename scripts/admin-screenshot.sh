#!/usr/bin/env bash
# Makes docs/admin.png: a release chat-server with the console on, chat-bench's seed traffic
# against it (500 clients in 100 channels, 500 msg/s), and headless Chromium signed in to the console (driven
# through chromedriver's WebDriver API with curl), screenshotted once the charts have filled.
#
#   scripts/admin-screenshot.sh [output.png]
#
# Needs (Debian): chromium chromium-driver curl python3 — installed when missing and root.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/admin.png}

. scripts/need-packages.sh
need_packages chromium chromium-driver curl

cargo build --release --quiet -p server -p chat-bench
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
port=8097
driver_port=9517
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Every chat-bench client comes from 127.0.0.x: the per-address limits are off (as in bench.sh).
CHAT_MAX_TCP_CONNECTIONS_PER_IP=0 "$bin/chat-server" --listen 127.0.0.1:$port \
  --admin-token "$token" --database "$work/chat.db" --key-file "$work/key.pem" \
  --max-connections-per-ip 0 --max-connections-per-user 0 \
  --logins-per-minute 1000000 --login-burst 1000000 >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

"$bin/chat-bench" seed --ws-url "ws://127.0.0.1:$port/" -n 500 --duration 90 \
  >"$work/bench.log" 2>&1 &
pids+=($!)

chromedriver --port=$driver_port >"$work/driver.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s "http://127.0.0.1:$driver_port/status" -m 1 | grep -q '"ready":true' && break; sleep 0.1; done

wd() { # METHOD PATH [JSON]: the WebDriver answer's value
  curl -s -X "$1" "http://127.0.0.1:$driver_port$2" -H 'Content-Type: application/json' \
    ${3:+-d "$3"} | python3 -c 'import json,sys; v=json.load(sys.stdin)["value"]; print(v if isinstance(v,str) else json.dumps(v))'
}
session=""
for _ in 1 2 3; do
  session=$(wd POST /session '{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"args":["--headless=new","--no-sandbox","--disable-dev-shm-usage","--disable-gpu","--window-size=1280,860"]}}}}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["sessionId"])' 2>/dev/null) && break
  sleep 1
done
[ -n "$session" ] || { echo "chromedriver would not open a session ($work/driver.log)" >&2; exit 1; }
find_id() { wd POST "/session/$session/element" "{\"using\":\"css selector\",\"value\":\"#$1\"}" \
  | python3 -c 'import json,sys; print(list(json.load(sys.stdin).values())[0])'; }
wd POST "/session/$session/url" "{\"url\":\"http://127.0.0.1:$port/admin/\"}" >/dev/null
wd POST "/session/$session/element/$(find_id token)/value" "{\"text\":\"$token\"}" >/dev/null
wd POST "/session/$session/element/$(find_id sign-in-button)/click" '{}' >/dev/null
echo "signed in; letting the charts fill for 60 s"
sleep 60
wd GET "/session/$session/screenshot" | base64 -d >"$out"
wd DELETE "/session/$session" >/dev/null
echo "wrote $out"
