#!/usr/bin/env bash
# Spot check beside the harness: Unix stream against TCP, and pipelined load (--pipeline 16)
# against ping-pong, 50 connections x 64 B, on one `sockecho serve --threads 1`.
# Server pinned to CPU 0, load generator to CPU 1; the four cases alternate for ROUNDS rounds.
# Usage: bash bench/spot.sh [ROUNDS]   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bin=./target/release/sockecho
dir=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
taskset -c 0 "$bin" serve tcp://127.0.0.1:0 "unix:$dir/s.sock" --threads 1 -q 2>"$dir/log" &
server=$!
for _ in $(seq 100); do grep -q "listening on unix" "$dir/log" && break; sleep 0.1; done
tcp=$(grep -o "tcp://127.0.0.1:[0-9]*" "$dir/log" | head -1)
for round in $(seq "$rounds"); do
  for endpoint in "$tcp" "unix:$dir/s.sock"; do
    for pipeline in 1 16; do
      taskset -c 1 "$bin" bench "$endpoint" -c 50 -s 64 -d 3s --warmup 500ms \
        --pipeline "$pipeline" --json |
        python3 -c 'import json, sys; d = json.load(sys.stdin); print(sys.argv[1], sys.argv[2], sys.argv[3], int(d["msgs_per_s"]), "ok" if d["ok"] else "FAILED")' \
          "${endpoint%%:*}" "pipeline=$pipeline" "round=$round"
    done
  done
done
