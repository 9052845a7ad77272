#!/usr/bin/env bash
# A/B two builds of `sockecho serve` under the same load, alternating, server pinned to CPU 0
# and `sockecho bench` to CPU 1. Prints each run's round trips/s and the server's CPU time per
# echo (user + system from /proc/PID/stat over the whole run, warm-up included).
# Usage: bash bench/ab.sh BIN_A BIN_B [ROUNDS] [BENCH ARGS...]
#   e.g. bash bench/ab.sh target/release/sockecho /tmp/other/release/sockecho 3 -c 10 -s 1MiB
# The load generator is target/release/sockecho, or $BENCH if set. The transport is TCP, or
# $AB_TRANSPORT (tcp or udp).
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
load=("$@")
[ ${#load[@]} -gt 0 ] || load=(-c 50 -s 64)
bench=${BENCH:-./target/release/sockecho}
transport=${AB_TRANSPORT:-tcp}
case $transport in tcp|udp) ;; *) echo "AB_TRANSPORT must be tcp or udp" >&2; exit 2 ;; esac
dir=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
ticks=$(getconf CLK_TCK)
for round in $(seq "$rounds"); do
  for name in A B; do
    if [ "$name" = A ]; then bin=$a; else bin=$b; fi
    taskset -c 0 "$bin" serve "$transport://127.0.0.1:0" --threads 1 -q 2>"$dir/log" &
    server=$!
    for _ in $(seq 100); do grep -q "listening on" "$dir/log" && break; sleep 0.1; done
    endpoint=$(grep -o "$transport://127.0.0.1:[0-9]*" "$dir/log" | head -1)
    before=$(awk '{print $14 + $15}' "/proc/$server/stat")
    taskset -c 1 "$bench" bench "$endpoint" -d 3s --warmup 500ms --json "${load[@]}" >"$dir/out"
    after=$(awk '{print $14 + $15}' "/proc/$server/stat")
    kill "$server"; wait "$server" 2>/dev/null || true; server=
    python3 - "$name" "$round" "$before" "$after" "$ticks" "$dir/out" <<'PY'
import json, sys
name, rnd, before, after, ticks, path = sys.argv[1:]
d = json.load(open(path))
# Echoes in the whole run: the measured ones plus the warm-up's, at the measured rate.
echoes = d["messages_received"] * (d["duration_s"] + d["warmup_s"]) / d["duration_s"]
cpu_us = (float(after) - float(before)) / float(ticks) * 1e6 / max(echoes, 1)
print(f"{name} round={rnd} rt/s={d['msgs_per_s']:.0f} server_cpu_us_per_echo={cpu_us:.1f} ok={d['ok']}")
PY
  done
done
