#!/usr/bin/env bash
# Interoperability with independent implementations:
# - WebSocket: Python's `websockets` (in a venv under target/interop/, made once and reused)
#   against sockecho's WebSocket server, client, ping and bench; see .ci/interop.py.
# - TCP, UDP and Unix sockets: ncat, socat, OpenBSD nc and Python's standard library against
#   `sockecho serve` on both stream I/O paths, and sockecho's client, ping and bench against
#   their servers; see .ci/peers.py.
# Both run; the exit code is 1 if either failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# The peers, from Debian packages, installed only when missing (CI runs as root on a fresh
# machine, without a terminal). OpenBSD's nc is asked for by its own name: on Debian `nc` is
# whichever netcat was installed last, often ncat, whose flags differ.
missing=()
command -v ncat >/dev/null || missing+=(ncat)
command -v socat >/dev/null || missing+=(socat)
command -v nc.openbsd >/dev/null || missing+=(netcat-openbsd)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

WORK=target/interop
VENV=$WORK/venv
mkdir -p "$WORK"
if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check websockets==17.4
fi
cargo build --locked -p sockecho-cli
status=0
timeout 300 "$VENV/bin/python" .ci/interop.py target/debug/sockecho || status=1
# The standard library only: no venv needed.
timeout 120 python3 .ci/peers.py target/debug/sockecho || status=1
exit "$status"
