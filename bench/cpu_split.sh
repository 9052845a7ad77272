#!/usr/bin/env bash
# Where a server's CPU goes per connect-echo-close cycle: user and system time, from
# /proc/PID/stat before and after a churn run of `sockecho bench`.
# Usage: bash bench/cpu_split.sh [SLOTS] -- SERVER COMMAND...
#   e.g. bash bench/cpu_split.sh 50 -- taskset -c 0 target/release/sockecho serve tcp://127.0.0.1:0 --threads 1 -q
#        bash bench/cpu_split.sh 50 -- taskset -c 0 target/yardstick/epoll_echo 0
# The server must print `listening on tcp://HOST:PORT` on stderr. Bench runs pinned to CPU 1 for
# 3 s with `--churn --messages-per-conn 1 -s 64`, from 127.0.0.2-127.0.0.65 (so TIME_WAIT does
# not use up one address's ports). Prints user and system µs per cycle, and bench's own.
set -euo pipefail
cd "$(dirname "$0")/.."
slots=50
if [ "${1:-}" != "--" ]; then slots=$1; shift; fi
[ "${1:-}" = "--" ] || { echo "usage: bash bench/cpu_split.sh [SLOTS] -- SERVER COMMAND..." >&2; exit 2; }
shift
dir=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
# shellcheck source=bench/server.sh
. bench/server.sh
start_server "$@"
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$server/stat")
taskset -c 1 ./target/release/sockecho bench "$endpoint" --churn --messages-per-conn 1 \
  -c "$slots" -s 64 --source 127.0.0.2-127.0.0.65 -d 3s --warmup 0ms --json >"$dir/out"
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$server/stat")
python3 - "$u0" "$s0" "$u1" "$s1" "$(getconf CLK_TCK)" "$dir/out" <<'PY'
import json, sys
u0, s0, u1, s1, tck = (int(v) for v in sys.argv[1:6])
d = json.load(open(sys.argv[6]))
n = d["churn"]["connections_opened"]
us = 1e6 / tck / n
print(f"cycles={n} server user={(u1 - u0) * us:.2f} µs sys={(s1 - s0) * us:.2f} µs per cycle; "
      f"bench {d['client_cpu_s'] * 1e6 / n:.2f} µs per cycle; ok={d['ok']}")
PY
