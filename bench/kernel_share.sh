#!/usr/bin/env bash
# Where a server's CPU goes under load, by layer: the kernel's own (TCP/IP) work, the event
# interface (epoll or io_uring), system-call entry, and the server's own code. `perf record` on
# the server's CPU while `sockecho bench` loads it, then every sampled symbol put in one class.
# Usage: bash bench/kernel_share.sh [BENCH ARGS...] -- SERVER COMMAND...
#   e.g. bash bench/kernel_share.sh -c 50 -s 64 -- taskset -c 0 target/yardstick/epoll_echo 0
#        bash bench/kernel_share.sh --churn --messages-per-conn 1 -c 50 -s 64 \
#          --source 127.0.0.2-127.0.0.65 -- taskset -c 0 target/release/sockecho serve \
#          tcp://127.0.0.1:0 --threads 1 -q
# The server must run on CPU 0 and print `listening on tcp://HOST:PORT` on stderr; bench runs
# pinned to CPU 1 for 4 s, and perf samples CPU 0 for 3 s of it. Prints each class's share of
# the CPU's busy samples (idle samples are left out and counted apart). Needs perf.
set -euo pipefail
cd "$(dirname "$0")/.."
load=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do load+=("$1"); shift; done
[ "${1:-}" = "--" ] && [ $# -gt 1 ] || {
  echo "usage: bash bench/kernel_share.sh [BENCH ARGS...] -- SERVER COMMAND..." >&2
  exit 2
}
shift
[ ${#load[@]} -gt 0 ] || load=(-c 50 -s 64)
dir=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
# shellcheck source=bench/server.sh
. bench/server.sh
start_server "$@"
taskset -c 1 ./target/release/sockecho bench "$endpoint" -d 4s --warmup 0ms --json "${load[@]}" \
  >"$dir/out" &
bench=$!
sleep 0.5
perf record -q -C 0 -o "$dir/perf.data" -- sleep 3 2>/dev/null
wait "$bench"
perf report -i "$dir/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null >"$dir/report"
python3 - "$dir/report" <<'PY'
import re, sys
from collections import Counter

def layer(kernel: bool, sym: str) -> str:
    if not kernel:
        return "own code and libraries"
    if "halt" in sym or "idle" in sym or "mwait" in sym:
        return "idle"
    if "io_uring" in sym or sym.startswith(("io_", "__io")):
        return "io_uring"
    if sym.startswith("ep_") or "epoll" in sym:
        return "epoll"
    if "entry_SYSCALL" in sym or "syscall" in sym or sym.startswith(("__x64_sys", "__sys")):
        return "system-call entry"
    return "kernel (TCP/IP, scheduler, memory)"

shares = Counter()
for line in open(sys.argv[1]):
    m = re.match(r"\s*([\d.]+)%\s+\S+\s+\[(.)\]\s+(\S+)", line)
    if m:
        shares[layer(m.group(2) == "k", m.group(3))] += float(m.group(1))
idle = shares.pop("idle", 0.0)
busy = sum(shares.values()) or 1.0
for name, share in shares.most_common():
    print(f"{name:36s} {share / busy * 100:5.1f} %")
print(f"(idle: {idle:.1f} % of all samples)")
PY
