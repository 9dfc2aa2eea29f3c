#!/usr/bin/env bash
# Makes docs/chat_scene.png: runs the chat_scene example under Xvfb (software Vulkan, lavapipe)
# against a chat server, with the headless bot talking in the lobby, and saves a screenshot.
#
#   scripts/screenshot.sh [output.png]
#
# Binaries go to $CARGO_TARGET_DIR (default target/); SCREENSHOT_PROFILE picks the cargo profile.
#
# Needs (Debian): xvfb xauth mesa-vulkan-drivers libvulkan1 libx11-6 libx11-xcb1 libxcursor1
# libxi6 libxkbcommon-x11-0 — installed when missing and running as root.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/chat_scene.png}

. scripts/need-packages.sh
need_packages xvfb xauth mesa-vulkan-drivers libvulkan1 libx11-6 libx11-xcb1 libxcursor1 libxi6 \
  libxkbcommon-x11-0

# Release builds by default; SCREENSHOT_PROFILE=dev reuses the debug builds of `cargo test`.
profile=${SCREENSHOT_PROFILE:-release}
case "$profile" in dev | test) profile_dir=debug ;; bench) profile_dir=release ;; *) profile_dir=$profile ;; esac
cargo build --profile "$profile" -p server --bin chat-server
cargo build --profile "$profile" -p bevy_chat_examples --example chat_scene --example headless_bot
bin="${CARGO_TARGET_DIR:-target}/$profile_dir"

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
"$bin/chat-server" --listen "127.0.0.1:$port" --key-file "$work/key.pem" --guest-file "$work/guests.jsonl" \
  --database "$work/chat.db" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.1; done

# A bot that greets in several scripts and echoes what the scene says; its echo and the scene's
# line show as speech bubbles above their squares.
CHAT_SERVER_URL=$url BOT_NAME=EchoBot BOT_SAY="Hello! ようこそ · Привет · Γειά σου · 你好" \
  HOME="$work/bot" "$bin/examples/headless_bot" >"$work/bot.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "connected" "$work/bot.log" 2>/dev/null && break; sleep 0.1; done
# A second player who greets and then keeps typing: the panel's typing line.
CHAT_SERVER_URL=$url BOT_NAME=Mia BOT_SAY="brb, writing a long story" BOT_ECHO=0 BOT_TYPING=1 \
  HOME="$work/mia" "$bin/examples/headless_bot" >"$work/mia.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "connected" "$work/mia.log" 2>/dev/null && break; sleep 0.1; done

mkdir -p "$work/xdg" && chmod 700 "$work/xdg"
mkdir -p "$(dirname "$out")"
rm -f "$out"
XDG_RUNTIME_DIR="$work/xdg" HOME="$work/scene" CHAT_SERVER_URL=$url CHAT_SCENE_NAME=Ann \
  CHAT_SCENE_SAY="Hi everyone, first time here! こんにちは" CHAT_SCENE_EXPECT="echo: Hi everyone" \
  CHAT_SCENE_SCREENSHOT="$(realpath -m "$out")" CHAT_SCENE_TIMEOUT=90 \
  xvfb-run -a -s "-screen 0 1280x720x24" "$bin/examples/chat_scene"
test -s "$out"
echo "saved $out"
