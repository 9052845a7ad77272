#!/usr/bin/env bash
# Interoperability with independent implementations: Python's `websockets` (in a venv under
# target/interop/, made once and reused) against sockecho's WebSocket server, client, ping and
# bench. See .ci/interop.py for the checks.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=target/interop
VENV=$WORK/venv
mkdir -p "$WORK"
if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check websockets==17.4
fi
cargo build --locked -p sockecho-cli
timeout 300 "$VENV/bin/python" .ci/interop.py target/debug/sockecho
